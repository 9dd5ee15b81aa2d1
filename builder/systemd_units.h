// SystemdUnits: `systemctl enable` done offline on an image filesystem. It
// reads the unit's [Install] section and makes the same symlinks systemctl
// would (WantedBy=, RequiredBy=, Alias=, and Also= units in turn), so kiln can
// enable services without running anything inside the image.
#pragma once

#include <string>
#include <string_view>

#include "base/error.h"
#include "formats/ext4/ext4_image.h"

namespace kiln {

// Where the image keeps `unit` ("/usr/lib/systemd/system/ssh.service"), or ""
// when it has no such unit.
Result<std::string> find_unit(Ext4Image& fs, std::string_view unit);

Result<> enable_unit(Ext4Image& fs, std::string_view unit, int64_t mtime);

// Writes a unit file into /etc/systemd/system and enables it.
Result<> install_unit(Ext4Image& fs, std::string_view unit, std::string_view text, int64_t mtime);

}  // namespace kiln
