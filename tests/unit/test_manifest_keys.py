"""core-keys.json manifest modes: our manifest encoder and hash give the reference's bytes and keys."""
from __future__ import annotations

import pytest

from spacecorestore import crypto
from spacecorestore.core.messages import Manifest, decode_manifest, encode_manifest, manifest_hash
from spacecorestore.listing import core_dir
from vectors_util import h, load_vector

CASES = load_vector("core-keys")["cases"]


@pytest.mark.parametrize("n", range(len(CASES)))
@pytest.mark.parametrize("mode,version", [("manifestV0", 0), ("manifestV1", 1)])
def test_manifest_bytes_and_key(n, mode, version):
    c = CASES[n]
    pk = h(c["publicKey"])
    want = c["modes"][mode]
    m = Manifest.default(pk, version=version)
    assert encode_manifest(m) == h(want["manifest"])
    assert manifest_hash(m) == h(want["key"])
    dk = crypto.discovery_key(manifest_hash(m))
    assert dk == h(want["discoveryKey"])
    assert core_dir(dk) == want["storageDir"]
    back = decode_manifest(h(want["manifest"]))
    assert encode_manifest(back) == h(want["manifest"])


@pytest.mark.parametrize("n", range(len(CASES)))
def test_compat_storage_dir(n):
    c = CASES[n]
    assert core_dir(crypto.discovery_key(h(c["publicKey"]))) == c["modes"]["compat"]["storageDir"]
