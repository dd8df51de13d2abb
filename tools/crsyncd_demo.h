// tools/crsyncd_demo.h — `crsyncd demo`: replicas on loopback, apps writing
// through the VFS, live progress, a summary.
#ifndef CRSYNC_TOOLS_CRSYNCD_DEMO_H_
#define CRSYNC_TOOLS_CRSYNCD_DEMO_H_

#include <string>

namespace crsync {

struct DemoOptions {
  int replicas = 3;          // a hub and (replicas - 1) spokes
  int writes_per_app = 200;  // one-row transactions per replica's app
  std::string dir;           // "" = a new temporary directory, removed at exit
};

// Runs the demo; returns the process exit code (0 = converged).
int RunDemo(const DemoOptions& options);

}  // namespace crsync

#endif  // CRSYNC_TOOLS_CRSYNCD_DEMO_H_
