// InstanceProcesses: every host process of one instance, found and ended
// even when the hypervisor's main process is already gone. A hypervisor is
// more than the process kiln starts: UML runs each guest address space, its
// disk I/O thread and its SIGIO helper as host processes of their own (and
// slirp as another), and when its main process is killed they live on,
// reparented to init, one of them spinning. Each of them inherits the
// environment entry KILN_INSTANCE=<instance id> that kiln gives the
// hypervisor: the host side of UML never rewrites it and guest code cannot
// reach it, and the id is random, so no other process carries it. The
// process group would be a mark as well, but its number can name a
// stranger's group once ours has died; a cgroup would be the kernel's own
// mark, but making one needs root or a delegated subtree, and the
// environment works for every user.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"

namespace kiln {

// "KILN_INSTANCE=<id>", for the hypervisor's environment.
std::string instance_marker(std::string_view instance_id);

// The live processes that carry instance `instance_id`'s marker. A zombie
// carries nothing: it has ended, and only its parent can reap it.
std::vector<pid_t> find_instance_processes(std::string_view instance_id);

// Kills every process of the instance (SIGKILL), again and again until none
// is left, since one that was forking may leave a child behind; returns how
// many it killed. The error names those still alive after `timeout`.
Result<size_t> end_instance_processes(std::string_view instance_id, std::chrono::milliseconds timeout);

}  // namespace kiln
