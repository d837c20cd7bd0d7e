"""Cosmic voids: selection of the volume-limited sample, DESIVAST files, plots."""
