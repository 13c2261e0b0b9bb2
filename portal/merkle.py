"""The audit log's Merkle tree (docs/design.md, R23), as RFC 9162 (Certificate Transparency 2.0) defines it.

Plain Python with no Django import, so an auditor's machine can run it on an exported file with no database:
``manage.py verify_audit_export FILE`` is a thin wrapper over ``verify_export``.

- A leaf is one audit event, serialised canonically (``leaf_data``: JSON with sorted keys, no spaces, UTF-8).
  Leaf hash = SHA-256(0x00 || leaf data); an interior node = SHA-256(0x01 || left || right) (RFC 9162 §2.1.1).
- ``Frontier`` is the tree's compact range: the roots of the perfect subtrees that make up the first ``size``
  leaves, one per set bit of ``size``. It is all the sequencer keeps to extend the tree and compute its root.
- ``Tree`` holds every level in memory (32 bytes a node) to make inclusion (§2.1.3) and consistency (§2.1.4)
  proofs; ``verify_inclusion`` and ``verify_consistency`` are the RFC's verification algorithms.
- A signed tree head signs ``tree_head_message(size, root, timestamp)`` with Ed25519.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"
EMPTY_ROOT = hashlib.sha256(b"").digest()

#: The keys of an event's leaf data, in the order the export shows them (the serialisation sorts them anyway).
EVENT_FIELDS = ("id", "created_at", "actor_name", "actor_kind", "action", "target_type", "target_id",
                "target_label", "workspace_id", "before", "after", "request_id", "prev_hash", "hash")

EXPORT_FORMAT = "portal-audit-export-with-proofs/1"
TREE_HEAD_CONTEXT = "portal audit tree head v1"


_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def canonical_json(value: Any) -> str:
    """JSON with sorted keys, no spaces, UTF-8 characters as themselves (one encoder, reused: it is the hot path)."""
    return _CANONICAL.encode(value)


def leaf_data(event: dict[str, Any]) -> bytes:
    """The bytes a leaf hashes: the event's fields (exactly ``EVENT_FIELDS``) as canonical JSON."""
    if len(event) != len(EVENT_FIELDS) or not all(name in event for name in EVENT_FIELDS):
        missing, extra = set(EVENT_FIELDS) - set(event), set(event) - set(EVENT_FIELDS)
        raise ValueError(f"an event must have exactly the fields {', '.join(EVENT_FIELDS)}"
                         f"{'; missing ' + ', '.join(sorted(missing)) if missing else ''}"
                         f"{'; unexpected ' + ', '.join(sorted(extra)) if extra else ''}")
    return canonical_json(event).encode("utf-8")


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(NODE_PREFIX + left + right).digest()


def _largest_power_of_two_below(n: int) -> int:
    """k < n, a power of two, as large as possible (RFC 9162's split point); n > 1."""
    return 1 << ((n - 1).bit_length() - 1)


# --- the compact range --------------------------------------------------------------------------------------


class Frontier:
    """The roots of the perfect subtrees covering leaves [0, size), largest first: enough to append and to
    compute the root, whatever the size (at most 64 hashes)."""

    def __init__(self, size: int = 0, hashes: Sequence[bytes] = ()):
        if len(hashes) != bin(size).count("1"):
            raise ValueError(f"a frontier of {size} leaves has {bin(size).count('1')} subtree roots, "
                             f"not {len(hashes)}")
        self.size = size
        self.hashes = list(hashes)

    def append(self, leaf: bytes) -> None:
        node, size = leaf, self.size
        while size & 1:  # the new leaf completes a subtree: merge with the subtree of the same height
            node = node_hash(self.hashes.pop(), node)
            size >>= 1
        self.hashes.append(node)
        self.size += 1

    def extend(self, leaves: Iterable[bytes]) -> None:
        for leaf in leaves:
            self.append(leaf)

    def root(self) -> bytes:
        if not self.hashes:
            return EMPTY_ROOT
        node = self.hashes[-1]
        for left in reversed(self.hashes[:-1]):
            node = node_hash(left, node)
        return node


# --- the whole tree, for proofs -----------------------------------------------------------------------------


class Tree:
    """Every level of the tree over ``leaves`` (level 0 = leaf hashes), each a ``bytearray`` of 32-byte nodes.

    A level's odd last node has no parent on the next level; ``subtree_hash`` combines it as RFC 9162 does, so
    the roots and proofs of every size up to ``size`` can be made from the same levels."""

    def __init__(self, leaves: bytes | bytearray | Iterable[bytes] = ()):
        if isinstance(leaves, bytes | bytearray):
            level = bytearray(leaves)
        else:
            level = bytearray()
            for leaf in leaves:
                level += leaf
        self.levels = [level]
        while len(level) > 32:
            count = len(level) // 32
            parent = bytearray()
            for i in range(0, count - 1, 2):
                parent += node_hash(bytes(level[32 * i:32 * i + 32]), bytes(level[32 * i + 32:32 * i + 64]))
            self.levels.append(parent)
            level = parent

    @property
    def size(self) -> int:
        return len(self.levels[0]) // 32

    def leaf(self, index: int) -> bytes:
        return bytes(self.levels[0][32 * index:32 * index + 32])

    def _node(self, height: int, index: int) -> bytes:
        return bytes(self.levels[height][32 * index:32 * index + 32])

    def subtree_hash(self, start: int, end: int) -> bytes:
        """MTH(D[start:end]) for a range the RFC's recursion asks for (``start`` aligned to the range's split)."""
        count = end - start
        if count <= 0:
            return EMPTY_ROOT
        if count & (count - 1) == 0 and start % count == 0:
            height = count.bit_length() - 1
            if height < len(self.levels) and 32 * (start // count) + 32 <= len(self.levels[height]):
                return self._node(height, start // count)
        if count == 1:
            return self.leaf(start)
        k = _largest_power_of_two_below(count)
        return node_hash(self.subtree_hash(start, start + k), self.subtree_hash(start + k, end))

    def root(self, size: int | None = None) -> bytes:
        return self.subtree_hash(0, self.size if size is None else size)

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """PATH(index, D[0:size]) (RFC 9162 §2.1.3.1), nearest sibling first."""
        size = self.size if size is None else size
        if not 0 <= index < size <= self.size:
            raise ValueError(f"leaf {index} is not in a tree of {size} leaves")
        return self._path(index, 0, size)

    def _path(self, index: int, start: int, end: int) -> list[bytes]:
        count = end - start
        if count == 1:
            return []
        k = _largest_power_of_two_below(count)
        if index < start + k:
            return [*self._path(index, start, start + k), self.subtree_hash(start + k, end)]
        return [*self._path(index, start + k, end), self.subtree_hash(start, start + k)]

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> list[bytes]:
        """PROOF(old_size, D[0:new_size]) (RFC 9162 §2.1.4.1)."""
        new_size = self.size if new_size is None else new_size
        if not 0 < old_size <= new_size <= self.size:
            raise ValueError(f"no consistency proof from {old_size} to {new_size} leaves")
        return self._subproof(old_size, 0, new_size, True)

    def _subproof(self, m: int, start: int, end: int, complete: bool) -> list[bytes]:
        n = end - start
        if m == n:
            return [] if complete else [self.subtree_hash(start, end)]
        k = _largest_power_of_two_below(n)
        if m <= k:
            return [*self._subproof(m, start, start + k, complete), self.subtree_hash(start + k, end)]
        return [*self._subproof(m - k, start + k, end, False), self.subtree_hash(start, start + k)]


# --- verification (RFC 9162 §2.1.3.2 and §2.1.4.2) ----------------------------------------------------------


def verify_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes) -> bool:
    if not 0 <= index < size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(old_size: int, new_size: int, old_root: bytes, new_root: bytes,
                       proof: Sequence[bytes]) -> bool:
    if old_size == new_size:
        return not proof and old_root == new_root
    if not 0 < old_size < new_size or not proof:
        return False
    proof = list(proof)
    if old_size & (old_size - 1) == 0:  # a power of two: the old root is the first node of the path
        proof = [old_root, *proof]
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = proof[0]
    for c in proof[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == old_root and sr == new_root


# --- signed tree heads --------------------------------------------------------------------------------------


def tree_head_message(size: int, root: bytes, timestamp_ms: int) -> bytes:
    """The exact bytes a tree head's signature covers: four lines of text."""
    return f"{TREE_HEAD_CONTEXT}\n{size}\n{root.hex()}\n{timestamp_ms}\n".encode("ascii")


def key_id(public_key_raw: bytes) -> str:
    return hashlib.sha256(public_key_raw).hexdigest()[:16]


def verify_tree_head_signature(public_key_raw: bytes, size: int, root: bytes, timestamp_ms: int,
                               signature: bytes) -> bool:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        Ed25519PublicKey.from_public_bytes(public_key_raw).verify(
            signature, tree_head_message(size, root, timestamp_ms))
    except (InvalidSignature, ValueError):
        return False
    return True


# --- the export with proofs ---------------------------------------------------------------------------------


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def export_header(*, tree_head: dict[str, Any], public_key_raw: bytes, filters: dict[str, str],
                  pending_left_out: int) -> str:
    """The document's opening, up to the events array (the events follow one per line)."""
    header = {
        "format": EXPORT_FORMAT,
        "public_key": {"algorithm": "Ed25519", "key_id": key_id(public_key_raw), "raw_base64": b64(public_key_raw)},
        "tree_head": tree_head,
        "filters": filters,
        "pending_left_out": pending_left_out,
    }
    return canonical_json(header)[:-1] + ',"events":['


def export_entry(event: dict[str, Any], index: int, proof: Sequence[bytes]) -> str:
    return canonical_json({"event": event, "leaf_index": index, "inclusion_proof": [p.hex() for p in proof]})


def render_export(document: dict[str, Any]) -> str:
    """The exact text the portal writes for ``document``: the verifier re-renders what it read and compares, so
    an edit that JSON would read back as the same value (an escape written differently) is still found."""
    events = document.get("events", [])
    head = {key: value for key, value in document.items() if key != "events"}
    lines = [canonical_json(head)[:-1] + ',"events":[']
    lines += [("," if i else "") + "\n" + canonical_json(entry) for i, entry in enumerate(events)]
    return "".join(lines) + "\n]}\n"


@dataclass
class ExportCheck:
    ok: bool
    events: int = 0
    tree_size: int = 0
    problems: list[str] | None = None

    @property
    def first_problem(self) -> str:
        return (self.problems or [""])[0]


def verify_export(text: str, *, trusted_key_ids: Iterable[str] = ()) -> ExportCheck:
    """Check an export with proofs on its own: its tree head's signature, every event's inclusion proof
    against that head, and that the file is exactly as the portal wrote it. ``trusted_key_ids``, when given,
    must contain the signing key's id (compare it with the id the portal publishes)."""
    problems: list[str] = []
    try:
        document = json.loads(text)
        head, key, entries = document["tree_head"], document["public_key"], document["events"]
        public_key = base64.b64decode(key["raw_base64"], validate=True)
        size, root = int(head["size"]), bytes.fromhex(head["root_hash"])
        timestamp, signature = int(head["timestamp_ms"]), base64.b64decode(head["signature"], validate=True)
    except (ValueError, KeyError, TypeError) as error:
        return ExportCheck(False, problems=[f"The file is not an audit export with proofs ({error})."])
    if document.get("format") != EXPORT_FORMAT:
        problems.append(f"Unknown format {document.get('format')!r}; expected {EXPORT_FORMAT}.")
    if key.get("algorithm") != "Ed25519" or key.get("key_id") != key_id(public_key):
        problems.append("The public key's algorithm or id does not match the key.")
    trusted = set(trusted_key_ids)
    if trusted and key_id(public_key) not in trusted:
        problems.append(f"The tree head is signed by key {key_id(public_key)}, which is not one you trust.")
    if not verify_tree_head_signature(public_key, size, root, timestamp, signature):
        problems.append("The tree head's signature does not verify: the tree head or the key was changed.")
    for position, entry in enumerate(entries):
        try:
            event, index = entry["event"], int(entry["leaf_index"])
            proof = [bytes.fromhex(p) for p in entry["inclusion_proof"]]
            leaf = leaf_hash(leaf_data(event))
        except (ValueError, KeyError, TypeError) as error:
            problems.append(f"Entry {position + 1} is malformed ({error}).")
            continue
        if not verify_inclusion(index, size, leaf, proof, root):
            label = event.get("id") if isinstance(event, dict) else "?"
            problems.append(f"Event #{label} (entry {position + 1}, leaf {index}) is not in the signed tree: "
                            "it was changed, or its proof was.")
    if not problems and render_export(document) != text:
        problems.append("The file differs from the form the portal writes (it was edited, or re-formatted).")
    return ExportCheck(not problems, events=len(entries), tree_size=size, problems=problems)
