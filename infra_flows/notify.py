"""notify: send a message to the lab's notification block (Slack, e-mail, webhook) and keep it as an artifact.

Deployments of this flow carry the triggers of prefect.yaml that turn astrolab's events into messages
(a compliance regression, a quarantined DESI file); the message text is templated there from the event.
"""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from astrolab.settings import load_settings


@flow(name="notify", log_prints=True)
def notify(subject: str, message: str, notify_block: str | None = None, config: str | None = None) -> str:
    """Send ``message`` to ``notify_block`` (default ``alerts.notify_block``: a block's ``type-slug/name``, e.g.
    ``slack-webhook/lab-alerts``); without one, the message is kept as an artifact and logged."""
    settings = load_settings(config)
    create_markdown_artifact(f"# {subject}\n\n{message}\n", key="astrolab-alert", description=subject)
    block = notify_block or settings.alerts.notify_block
    if block:
        from prefect.blocks.core import Block

        notifier = Block.load(block)
        if not hasattr(notifier, "notify"):
            raise ValueError(f"alerts.notify_block {block!r} is a {type(notifier).__name__}, not a notification "
                             "block (e.g. slack-webhook/NAME, email/NAME, custom-webhook/NAME)")
        notifier.notify(message, subject=subject)
    else:
        get_run_logger().warning("no notification block configured (alerts.notify_block): the alert is kept as an "
                                 "artifact only")
    print(f"{subject}: {message}")
    return message
