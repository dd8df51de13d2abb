# transport/wire.capnp — the sidecar protocol between two crsync peers.
#
# Every message on a connection is one `Message`, sent as the payload of a
# frame (transport/frame.h): a flat Cap'n Proto message behind a length and
# an XXH3-64 checksum. Site ids are always 16 bytes; db_versions are the
# sending site's own versions (crsql_changes.db_version) unless a field says
# otherwise.
#
# Evolution: add fields and union members only at the end, never renumber.
# A peer that reads a union member it does not know reports an error
# instead of guessing.

@0x9f1b3a235baec736;

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("crsync::wire");

struct Message {
  union {
    hello @0 :Hello;
    changeset @1 :Changeset;
    ack @2 :Ack;
    error @3 :Error;
  }
}

# First message each side sends on a connection.
struct Hello {
  protocolVersion @0 :UInt32;
  siteId @1 :Data;              # the sender's site id (16 bytes)
  schemaFingerprint @2 :UInt64; # XXH3-64 of the sender's CRR schema
  # What the sender already has from each site it syncs with: its receive
  # cursor per origin. The recipient looks for its own site id; absent = 0.
  haveFrom @3 :List(Cursor);
  # The sender's newest committed db_version when it said hello (-1:
  # unknown). A recipient whose cursor for the sender is past it knows the
  # sender lost versions it had announced (restored from a backup).
  currentVersion @4 :Int64 = -1;
  # The sender's restore epoch: 0 until the sender first learns (from a
  # peer's resync error) that it lost versions it had announced, then a new
  # value each time: a generation in the high 32 bits, random low bits. A
  # recipient holding a cursor for the sender that last saw another epoch
  # from it resynchronizes as if it had detected the loss itself: the first
  # peer to detect a restore tells all the others.
  restoreEpoch @5 :Int64;
  # A random number the sender's sidecar draws when it starts (0: not
  # said). Two connections showing one site id with different instances
  # come from two live databases sharing that id (a copied database, or two
  # sidecars on one database): the recipient refuses the later one.
  instance @6 :UInt64;
  # How often the sender says something when it has nothing else to say
  # (a no-op Ack), in ms (0: it does not). A recipient that hears nothing
  # from it for several such periods takes the connection for dead (a peer
  # or a path that vanished without a reset, which TCP alone may never
  # report through a relaying hop) and closes it.
  heartbeatMs @7 :UInt32;
  # The sender answers an Ack with `probe` set promptly (with any message),
  # so a recipient that probes it may close the connection when no answer
  # comes within a few seconds (a peer that says false is never closed so).
  answersProbes @8 :Bool;
}

# "Every change of `siteId` up to `dbVersion` is committed here."
struct Cursor {
  siteId @0 :Data;
  dbVersion @1 :Int64;
}

# A slice of the sender's change feed: the changes with db_version in
# [startVersion, endVersion] (inclusive, sender's versions) the recipient may
# need. Versions without a change in the range are gaps, not losses.
struct Changeset {
  senderSiteId @0 :Data;
  startVersion @1 :Int64;
  endVersion @2 :Int64;
  # A transaction too large for one message is sent as `parts` changesets
  # with the same range, numbered 0 .. parts-1 by `part`; the recipient
  # applies it once it holds every part, whatever their arrival order.
  part @3 :UInt32;
  parts @4 :UInt32;
  changes @5 :List(Change);
}

# One row of crsql_changes (all nine columns).
struct Change {
  table @0 :Text;
  pk @1 :Data;          # packed primary key
  cid @2 :Text;         # column name, or "-1" for the row sentinel
  val :union {
    null @3 :Void;
    int @4 :Int64;
    real @5 :Float64;
    text @6 :Text;
    blob @7 :Data;
  }
  colVersion @8 :Int64;
  dbVersion @9 :Int64;  # the sender's db_version of this change
  siteId @10 :Data;     # the change's origin (16 bytes)
  cl @11 :Int64;        # causal length
  seq @12 :Int64;
}

# The recipient committed every change of the sender's feed up to
# `upToVersion` (its receive cursor), and grants the sender `credits` more
# changesets in flight.
struct Ack {
  upToVersion @0 :Int64;
  credits @1 :UInt32;
  # "Say something now": a recipient whose Hello set answersProbes sends a
  # message (a no-op Ack) as soon as it reads this one. Sent on a
  # connection whose liveness matters now (another instance of its peer's
  # site id asked to be admitted).
  probe @2 :Bool;
}

# Sent before closing a connection on a protocol-level failure; code 7
# (cannot send: the sender's next change is too large for a frame) is sent
# without closing: only that direction stops.
struct Error {
  code @0 :UInt32;
  message @1 :Text;
  # Code 5 (resync): the highest restore epoch the sender has seen from the
  # recipient; the recipient renews its epoch past it.
  restoreEpoch @2 :Int64;
}
