"""Partitioned execution of a build: partitions of source rows, the executors that map over them, the spill.

A build runs as passes over partitions (``parts.py``) with global decisions between them (``engine.py``):
read (raw rows, row counts, schemas) → render + the row-local filters before the first global one + the global
filters' keys → global decisions on those keys (exact and near dedup) → the remaining row-local filters and the
row tokens → split and mix on a light ``(row, task, source_ref, tokens)`` frame → each split streamed to parquet
(``writer.py``). Rows between passes live in spill files under the build's staging directory (``spill.py``);
the driver only holds per-row keys one column at a time, so peak memory follows the partition size.

Executors (``executors.py``) map a pass over partitions: in this process, in N local worker processes, or on
Ray. Every executor gives the same bytes: each partition's work is deterministic and results are put back in
partition order before anything global happens.
"""
