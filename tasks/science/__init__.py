"""Science: galaxy selection, clustering, crossmatch, voids and AGN over the catalog and the lake."""
