// GuestAgent: the small agent kiln bakes into every image. At boot it
// applies the instance's personality from the seed disk that `kiln boot`
// attaches (runtime/seed_disk.h), runs the instance's first-boot script
// once, before the login prompt (as rc.local runs), and, once multi-user is
// reached, prints "KILN-READY <id> ..." on the console, which is how `kiln
// boot --wait-ready` knows the guest is up. It does nothing on a boot
// without a seed disk. What it and the host say to each other is defined in
// formats/image/guest_protocol.h.
#pragma once

#include <string>

#include "base/error.h"
#include "formats/ext4/ext4_image.h"

namespace kiln {

Result<> install_guest_agent(Ext4Image& fs, int64_t mtime);

// The agent's shell script, as installed at /usr/lib/kiln/kiln-agent.
std::string guest_agent_script();

}  // namespace kiln
