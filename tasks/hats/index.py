"""The index files of a HATS catalog's partitions: ``dataset/_common_metadata`` (the schema), ``dataset/_metadata``
(every partition file's row groups) and ``partition_info.csv`` (the partitions' order and pixel), written once the
partition files are."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from tasks.hats.reader import Partition, partition_path


def write_partition_index(out: Path, schema: pa.Schema, partitions: Sequence[Partition]) -> int:
    """Write the index of the partition files under ``out`` (in the order given); returns their total rows."""
    metadata = []
    for part in partitions:
        target = partition_path(out, part)
        meta = pq.read_metadata(target)
        meta.set_file_path(str(target.relative_to(out / "dataset")))
        metadata.append(meta)
    (out / "dataset").mkdir(parents=True, exist_ok=True)
    pq.write_metadata(schema, out / "dataset" / "_common_metadata")
    pq.write_metadata(schema, out / "dataset" / "_metadata", metadata_collector=metadata)
    with open(out / "partition_info.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["Norder", "Npix"])
        writer.writerows(partitions)
    return sum(m.num_rows for m in metadata)
