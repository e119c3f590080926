"""senti.batch: bulk scoring of comment files (JSONL, CSV, Parquet) with the serving engine on Ray Data.

`senti-batch` (cli.py) is the command line; job.py runs a job on a local Ray or a cluster; scoring.py is the
actor's work (the engine, one shard at a time); inputs.py and outputs.py plan, read and write the files.
Needs the optional extra: `pip install senti[batch]` (Ray Data, pyarrow, pandas); never in the serving image.
"""
