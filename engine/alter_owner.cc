// engine/alter_owner.cc — which connection an open alter belongs to:
// the owner token its guard triggers pass and its crsql_master mark holds,
// the guard function itself, and the checks that forget an alter taken
// over, finished or rolled back elsewhere (or take back one whose commit
// a rollback undid). The alter's begin and commit are in engine/alter.cc.
#include <string>

#include "common/guard.h"
#include "engine/alter.h"
#include "engine/crr_admin.h"
#include "engine/recorder.h"

namespace crsync {

std::string AlterOpenElsewhere(const std::string& table) {
  const std::string quoted = QuoteLiteral(table);
  return "crsql - " + table + " is being altered: crsql_begin_alter(" + quoted +
         ") ran on another connection, whose crsql_commit_alter has not run yet, and until it "
         "does " +
         table +
         "'s writes would not be recorded; retry after it (if that connection "
         "is gone, run SELECT crsql_begin_alter(" +
         quoted + "); SELECT crsql_commit_alter(" + quoted + "); here)";
}

namespace {

// Begin replaced the recording triggers by its guard and marked the alter
// open with its owner token, in its savepoint; commit undoes both. So
// `alter` is open, and this connection's, iff the recording triggers are
// away and the mark holds its token.
Status HeldBy(ConnEngine* e, const std::string& table, const ConnEngine::OpenAlter& alter,
              bool* held) {
  bool recording = false;
  int64_t owner = 0;
  CRSYNC_RETURN_IF_ERROR(RecordingTriggersStand(e->db(), table, &recording));
  if (!recording) CRSYNC_RETURN_IF_ERROR(OpenAlterOwner(e->db(), alter.crr_id, &owner));
  *held = !recording && owner == alter.owner;
  return Status::OK();
}

}  // namespace

Status ReopenUndoneCommits(ConnEngine* e) {
  auto& committed = e->committed_alters();
  for (auto it = committed.begin(); it != committed.end();) {
    bool held = false;
    CRSYNC_RETURN_IF_ERROR(HeldBy(e, it->first, it->second, &held));
    if (!held) {
      ++it;
      continue;
    }
    e->open_alters()[it->first] = it->second;
    it = committed.erase(it);
  }
  return Status::OK();
}

Status ConfirmOpenAlters(ConnEngine* e) {
  if (!e->alters_unsure() && !e->alters_may_have_moved()) return Status::OK();
  auto& open = e->open_alters();
  for (auto it = open.begin(); it != open.end();) {
    // Standing recording triggers, or a mark with another owner (or none),
    // mean no alter of this connection's: a rollback undid it (whichever
    // transaction began it: the one whose ROLLBACK TO undid it may have
    // committed since), another connection finished it, or another
    // connection's begin took it over.
    bool held = false;
    CRSYNC_RETURN_IF_ERROR(HeldBy(e, it->first, it->second, &held));
    it = held ? std::next(it) : open.erase(it);
  }
  CRSYNC_RETURN_IF_ERROR(ReopenUndoneCommits(e));
  e->set_alters_unsure(false);
  return Status::OK();
}

Status CheckShapeForMerge(ConnEngine* e, Crr* crr) {
  if (crr->ShapeMatches()) return Status::OK();
  CRSYNC_RETURN_IF_ERROR(ConfirmOpenAlters(e));
  // Between this connection's own begin and commit it differs on purpose.
  if (e->open_alters().count(crr->name())) return Status::OK();
  Status s = crr->CheckShape();
  if (s.ok()) return s;
  bool guarded = false;
  CRSYNC_RETURN_IF_ERROR(AlterGuardStands(e->db(), crr->name(), &guarded));
  return guarded ? Status::FailedPrecondition(AlterOpenElsewhere(crr->name())) : s;
}

int RegisterAlterGuard(sqlite3* db, ConnEngine* e) {
  // crsync_alter_guard(table, owner); guards an older build made pass no
  // owner, and belong to no alter of this build's.
  auto guard = [](sqlite3_context* ctx, int argc, sqlite3_value** argv) {
    GuardSqlFunction(ctx, [&] {
      auto* engine = static_cast<ConnEngine*>(sqlite3_user_data(ctx));
      const unsigned char* t = sqlite3_value_text(argv[0]);
      std::string table = t ? reinterpret_cast<const char*>(t) : "";
      // The guard carries its alter's random owner token: matching this
      // connection's open alter of the table, the write is the owner's (no
      // query per row). Otherwise the alter is another's: forget ours if
      // it was taken over, and refuse.
      auto owned = [&] {
        auto open = engine->open_alters().find(table);
        return open != engine->open_alters().end() && argc == 2 &&
               sqlite3_value_int64(argv[1]) == open->second.owner;
      };
      if (owned()) return sqlite3_result_null(ctx);
      // (or ours again: a rollback undid our commit of it)
      if (Status s = ConfirmOpenAlters(engine); !s.ok()) {
        return sqlite3_result_error(ctx, s.message().c_str(), -1);
      }
      if (owned()) return sqlite3_result_null(ctx);
      sqlite3_result_error(ctx, AlterOpenElsewhere(table).c_str(), -1);
    });
  };
  int rc = SQLITE_OK;
  for (int argc : {1, 2}) {
    if (rc == SQLITE_OK) {
      rc = sqlite3_create_function_v2(db, "crsync_alter_guard", argc,
                                      SQLITE_UTF8 | SQLITE_INNOCUOUS, e, guard, nullptr, nullptr,
                                      nullptr);
    }
  }
  return rc;
}

}  // namespace crsync
