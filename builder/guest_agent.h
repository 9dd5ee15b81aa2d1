// GuestAgent: the small agent kiln bakes into every image. At boot it
// applies the instance's personality from the seed disk that `kiln boot`
// attaches (runtime/seed_disk.h), runs the instance's first-boot script
// once, before the login prompt (as rc.local runs), and, once multi-user is
// reached, prints "KILN-READY <id> ..." on the console, which is how `kiln
// boot --wait-ready` knows the guest is up. It does nothing on a boot
// without a seed disk. What it and the host say to each other is defined in
// formats/image/guest_protocol.h.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>

#include "base/error.h"
#include "formats/ext4/ext4_image.h"

namespace kiln {

Result<> install_guest_agent(Ext4Image& fs, int64_t mtime);

// The exec agent (a static binary built with kiln for each architecture it
// has a compiler for) and its unit, which serve `kiln exec`; false when this
// kiln has no agent for the image's dpkg architecture (nothing is installed
// then).
Result<bool> install_exec_agent(Ext4Image& fs, std::string_view architecture, int64_t mtime);

// The agent for `architecture` as this kiln finds it: kiln-exec-agent (its
// own architecture's; $KILN_EXEC_AGENT overrides) or kiln-exec-agent-ARCH,
// beside the kiln executable or in ../lib/kiln from it.
Result<std::filesystem::path> find_exec_agent_binary(std::string_view architecture);

// The agent's shell script, as installed at kAgentScriptPath (guest_protocol.h).
std::string guest_agent_script();

}  // namespace kiln
