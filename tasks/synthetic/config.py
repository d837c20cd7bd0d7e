"""What a synthetic DESI DR1 sample is made of (the config) and what a run wrote (the manifest)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from tasks.errors import did_you_mean

SURVEYS = ("cmx", "main", "special", "sv1", "sv2", "sv3")
PROGRAMS = ("backup", "bright", "dark", "other")
FILE_KINDS = ("zpix", "zall", "fastspec", "coadd", "redrock")


@dataclass(frozen=True)
class SampleConfig:
    """Size, seed and content switches of one synthetic sample."""

    n_rows: int = 10_000
    seed: int = 42
    programs: tuple[tuple[str, str], ...] = (
        ("main", "backup"), ("main", "bright"), ("main", "dark"), ("sv3", "bright"), ("sv3", "dark"),
    )
    repeat_fraction: float = 0.07
    n_voids: int = 40
    n_coadd_pixels: int = 2
    coadd_nspec: int = 20
    write_zall: bool = True
    write_fastspec: bool = True
    write_spectra: bool = True

    def __post_init__(self) -> None:
        if self.n_rows < 1:
            raise ValueError(f"SampleConfig.n_rows must be >= 1, got {self.n_rows}")
        if not self.programs:
            raise ValueError("SampleConfig.programs is empty; give at least one (survey, program) pair")
        for pair in self.programs:
            if len(pair) != 2 or pair[0] not in SURVEYS or pair[1] not in PROGRAMS:
                raise ValueError(
                    f"SampleConfig.programs entry {pair!r} is not a DR1 (survey, program) pair; "
                    f"surveys are {SURVEYS}, programs are {PROGRAMS}"
                )
        if len(set(self.programs)) != len(self.programs):
            raise ValueError(f"SampleConfig.programs has duplicates: {self.programs}")
        if not 0.0 <= self.repeat_fraction < 1.0:
            raise ValueError(f"SampleConfig.repeat_fraction must be in [0, 1), got {self.repeat_fraction}")
        for name in ("n_voids", "n_coadd_pixels", "coadd_nspec"):
            if getattr(self, name) < 0:
                raise ValueError(f"SampleConfig.{name} must be >= 0, got {getattr(self, name)}")

    @classmethod
    def from_dict(cls, data: dict) -> SampleConfig:
        """Build a config from plain data (JSON); unknown keys are an error with a hint."""
        known = {f.name for f in fields(cls)}
        for key in data:
            if key not in known:
                raise ValueError(f"unknown SampleConfig key {key!r}{did_you_mean(key, known)}")
        values = dict(data)
        if "programs" in values:
            values["programs"] = tuple(tuple(p) for p in values["programs"])
        return cls(**values)


@dataclass(frozen=True)
class SampleFile:
    """One file the generator wrote."""

    path: Path
    kind: str
    rows: int
    survey: str | None
    program: str | None


@dataclass(frozen=True)
class SampleManifest:
    """Everything one run wrote under `root` (which plays the role of DESI's public/dr1/)."""

    root: Path
    files: tuple[SampleFile, ...]
    truth_voids: Path
    config: SampleConfig

    def to_json(self) -> str:
        """The manifest as JSON, paths relative to root."""
        return json.dumps(
            {
                "config": asdict(self.config),
                "truth_voids": self.truth_voids.relative_to(self.root).as_posix(),
                "files": [
                    {
                        "path": f.path.relative_to(self.root).as_posix(),
                        "kind": f.kind,
                        "rows": f.rows,
                        "survey": f.survey,
                        "program": f.program,
                    }
                    for f in self.files
                ],
            },
            indent=2,
        )

    @classmethod
    def from_json(cls, root: Path, text: str) -> SampleManifest:
        """Read a manifest written by `to_json` back, paths made absolute under root."""
        data = json.loads(text)
        files = tuple(
            SampleFile(root / f["path"], f["kind"], f["rows"], f["survey"], f["program"]) for f in data["files"]
        )
        return cls(root, files, root / data["truth_voids"], SampleConfig.from_dict(data["config"]))
