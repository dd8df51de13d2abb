// transport/log_limiter.h — keeps a daemon's log readable when one thing
// keeps happening.
//
// A peer that connects and hangs up in a loop, or one refused at every
// handshake, makes the same kind of line again and again; written each time,
// they would fill a disk and bury everything else. LogLimiter lets a burst of
// each kind of line through per window, leaves the rest out, and says how
// many it left out (with the last of them) once the window is over.
//
// A "kind" is a key chosen by the caller: the format string's address and
// the level, so that "connection 7 closed: ..." and "connection 8 closed:
// ..." are one kind, plus, for lines about one peer, its address, so that
// one peer (or a health check) that keeps connecting hides nothing of
// another's.
//
// Not thread-safe: the caller serializes (Sidecar::Impl::Log holds a mutex).
// Times are milliseconds of any monotonic clock, given by the caller.
#ifndef CRSYNC_TRANSPORT_LOG_LIMITER_H_
#define CRSYNC_TRANSPORT_LOG_LIMITER_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace crsync {

class LogLimiter {
 public:
  // At most `burst` lines of one kind per `window_ms` (both positive).
  LogLimiter(int burst, uint64_t window_ms);

  struct Verdict {
    bool write = false;   // write this line
    bool last = false;    // it is the last of its kind written this window:
                          // the caller says that more will be left out
    std::string summary;  // non-empty: write this first (an earlier window
                          // of this kind left lines out)
  };
  // Decides about one line of `kind` (its text, without time or level, is
  // kept in case it is the last left out; its level is the summary's).
  Verdict Admit(const std::string& kind, int level, uint64_t now_ms, std::string_view text);

  struct Summary {
    int level;
    std::string text;
  };
  // Summaries of the kinds whose window is over with lines left out, to be
  // written now (from a timer), so that a burst that stopped is still
  // accounted for. `all` ends every window (at shutdown).
  std::vector<Summary> Expired(uint64_t now_ms, bool all = false);

 private:
  struct Window {
    uint64_t start_ms = 0;
    int written = 0;
    uint64_t left_out = 0;
    int level = 0;     // of the last line left out
    std::string last;  // the last line left out
  };
  std::string Describe(const Window& w, uint64_t now_ms) const;

  const int burst_;
  const uint64_t window_ms_;
  std::unordered_map<std::string, Window> windows_;
};

}  // namespace crsync

#endif  // CRSYNC_TRANSPORT_LOG_LIMITER_H_
