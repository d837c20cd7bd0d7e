"""The Dask cluster the settings build: a LocalCluster, an existing scheduler, or a clear error for the GPU."""

import dask.array as da
import pytest
from distributed import LocalCluster

from astrolab.resources import dask_client
from astrolab.settings import SettingsError, load_settings


def test_local_cluster_by_default():
    settings = load_settings(env={"ASTROLAB_DASK_N_WORKERS": "1", "ASTROLAB_DASK_MEMORY_LIMIT": "1GiB"})
    with dask_client(settings) as client:
        assert len(client.scheduler_info()["workers"]) == 1
        assert da.arange(1000, chunks=100).sum().compute() == 499500


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
