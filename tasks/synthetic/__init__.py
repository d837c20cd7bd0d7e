"""A deterministic, bounded-memory generator of a synthetic DESI DR1 sample (zpix, zall, FastSpecFit, spectra)."""

from .config import SampleConfig, SampleFile, SampleManifest
from .footprint import in_footprint
from .generator import generate_sample

__all__ = ["SampleConfig", "SampleFile", "SampleManifest", "generate_sample", "in_footprint"]
