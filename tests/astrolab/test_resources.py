"""The Dask cluster the settings build: a LocalCluster, an existing scheduler, or a clear error for the GPU."""

import threading
import time

import dask.array as da
import pytest
from distributed import LocalCluster

from astrolab.resources import dask_client, gpu_node_slot, worker_numba_threads
from astrolab.settings import SettingsError, load_settings


def test_local_cluster_by_default():
    settings = load_settings(env={"ASTROLAB_DASK_N_WORKERS": "1", "ASTROLAB_DASK_MEMORY_LIMIT": "1GiB"})
    with dask_client(settings) as client:
        assert len(client.scheduler_info()["workers"]) == 1
        assert da.arange(1000, chunks=100).sum().compute() == 499500
        numba_threads = client.run(lambda: __import__("numba").config.NUMBA_NUM_THREADS)
        assert list(numba_threads.values()) == [worker_numba_threads(1)]


def test_numba_threads_share_the_cores_out():
    assert [worker_numba_threads(n, cores=16) for n in (1, 2, 3, 16, 32)] == [16, 8, 5, 1, 1]


def test_two_gpu_flows_on_one_node_queue(prefect_server):
    order: list[str] = []
    held = threading.Event()

    def first() -> None:
        with gpu_node_slot("node-a"):
            order.append("first in")
            held.set()
            time.sleep(1.5)
            order.append("first out")

    thread = threading.Thread(target=first)
    thread.start()
    held.wait(30)
    with gpu_node_slot("node-a"):  # waits for the first to let go
        order.append("second in")
    with gpu_node_slot("node-b", timeout_seconds=10):  # another node's GPUs are free
        order.append("other node")
    thread.join()
    assert order == ["first in", "first out", "second in", "other node"]


def test_existing_scheduler_address():
    with LocalCluster(n_workers=1, processes=False, dashboard_address=None) as cluster:
        settings = load_settings(env={"ASTROLAB_DASK_ADDRESS": cluster.scheduler_address})
        with dask_client(settings) as client:
            assert client.scheduler.address == cluster.scheduler_address
            assert client.submit(lambda x: x + 1, 41).result() == 42


def test_gpu_without_cuda_is_a_clear_error():
    pytest.importorskip("distributed")
    try:
        import dask_cuda  # noqa: F401
    except ImportError:
        with pytest.raises(SettingsError, match="dask.gpu is set but dask_cuda cannot be imported"), \
                dask_client(load_settings(env={"ASTROLAB_DASK_GPU": "true"})):
                pass
    else:
        pytest.skip("dask_cuda is importable here")


def test_catalog_state_changes_when_rows_are_loaded(tmp_path):
    from astrolab.resources import build_catalog, catalog_state
    from tasks.catalog.schema import LineageRecord

    settings = load_settings(env={"ASTROLAB_HOME": str(tmp_path)})
    build_catalog(settings).close()
    before = catalog_state(settings)
    assert before == catalog_state(settings)
    with build_catalog(settings) as catalog:
        catalog.quarantine(LineageRecord(file_hash="a", path="zpix-main-dark.fits", kind="zpix", product="redshifts",
                                         survey="main", program="dark", n_rows=None, status="quarantined"))
    assert catalog_state(settings) == before  # a refused file changes no rows
    with build_catalog(settings) as catalog:
        catalog.quarantine(LineageRecord(file_hash="b", path="zpix-main-bright.fits", kind="zpix",
                                         product="redshifts", survey="main", program="bright", n_rows=10,
                                         status="loaded"))
    assert catalog_state(settings) != before
