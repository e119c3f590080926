"""The committed stubs (client/v1, imported as senti.v1) are what protos/senti/v1/senti.proto generates today."""
from pathlib import Path

from protos.generate import GENERATED, STUBS, generate


def test_committed_stubs_are_up_to_date(tmp_path: Path):
    generate(tmp_path)
    for name in GENERATED:
        fresh = (tmp_path / name).read_text()
        committed = (STUBS / name).read_text()
        assert fresh == committed, f"client/v1/{name} is stale: run `make proto` and commit the result"
