"""AGN: BPT, broad-line and WISE classification of FastSpecFit rows, tables, FITS and plots."""
