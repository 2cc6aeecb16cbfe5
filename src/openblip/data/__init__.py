"""Data: the synthetic-scenes benchmark and the image-text formats (webdataset shards, folders, lists).

`synthetic` writes the offline benchmark (train / web / test splits); `formats` streams samples
from webdataset tar shards, image folders and jsonl/parquet lists; `shard_writer` writes shards in
img2dataset's layout.
"""
