"""Answers RFC 4918 prescribes where a request cannot be carried out, with nothing changed.

- MOVE and COPY whose Destination's parent folder does not exist: 409 Conflict (9.8.5, 9.9.4: "a
  resource cannot be created at the destination until one or more intermediate collections have
  been created"), the source left as it was.
"""

from __future__ import annotations

import pytest

from tests.write.conftest import http as request, random_bytes, sha256


@pytest.mark.parametrize("method", ["MOVE", "COPY"])
@pytest.mark.parametrize("dest", ["missing/dest.bin", "missing/deeper/dest.bin", "file.bin/dest.bin"],
                         ids=["missing", "deeper", "under-a-file"])
def test_a_destination_whose_folder_is_missing_is_409_and_changes_nothing(folder, method, dest):
    data = random_bytes(70_000, 31)
    assert request("PUT", folder + "file.bin", data)[0] == 201
    assert request("MKCOL", folder + "dir")[0] == 201
    assert request("PUT", folder + "dir/inner.txt", b"inner")[0] == 201
    for source in ("file.bin", "dir/"):
        status, _, body = request(method, folder + source, headers={"Destination": folder + dest})
        assert status == 409, (method, source, dest, status, body)
    assert sha256(request("GET", folder + "file.bin")[2]) == sha256(data)
    assert request("GET", folder + "dir/inner.txt")[2] == b"inner"
    assert request("PROPFIND", folder + "missing/", headers={"Depth": "0"})[0] == 404
