// transport/log_limiter.cc — see log_limiter.h.
#include "transport/log_limiter.h"

#include <cstdio>

namespace crsync {

LogLimiter::LogLimiter(int burst, uint64_t window_ms)
    : burst_(burst > 0 ? burst : 1), window_ms_(window_ms > 0 ? window_ms : 1) {}

std::string LogLimiter::Describe(const Window& w, uint64_t now_ms) const {
  char head[128];
  const uint64_t secs = (now_ms - w.start_ms + 999) / 1000;
  std::snprintf(head, sizeof head, "left out %llu more line%s like this in %llu s; the last: ",
                static_cast<unsigned long long>(w.left_out), w.left_out == 1 ? "" : "s",
                static_cast<unsigned long long>(secs));
  return head + w.last;
}

LogLimiter::Verdict LogLimiter::Admit(const std::string& kind, int level, uint64_t now_ms,
                                      std::string_view text) {
  Verdict v;
  auto [it, fresh] = windows_.try_emplace(kind);
  Window& w = it->second;
  if (fresh || now_ms - w.start_ms >= window_ms_) {
    if (w.left_out > 0) v.summary = Describe(w, now_ms);
    w = Window{};
    w.start_ms = now_ms;
  }
  if (w.written < burst_) {
    ++w.written;
    v.write = true;
    v.last = w.written == burst_;
    return v;
  }
  ++w.left_out;
  w.level = level;
  w.last.assign(text);
  return v;
}

std::vector<LogLimiter::Summary> LogLimiter::Expired(uint64_t now_ms, bool all) {
  std::vector<Summary> out;
  for (auto it = windows_.begin(); it != windows_.end();) {
    const Window& w = it->second;
    if (!all && now_ms - w.start_ms < window_ms_) {
      ++it;
      continue;
    }
    if (w.left_out > 0) out.push_back(Summary{w.level, Describe(w, now_ms)});
    it = windows_.erase(it);  // a kind seen again starts a new window
  }
  return out;
}

}  // namespace crsync
