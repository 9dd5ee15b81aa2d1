// Finding the LUKS volume in an image file for `kiln luks`: the file itself
// (root.img of an encrypted layout), or the partition of a GPT disk image
// (disk.raw) whose first bytes are a LUKS header.
#pragma once

#include <filesystem>
#include <optional>

#include "base/error.h"
#include "crypto/luks.h"

namespace kiln {

// `partition` picks a partition by number (1-based) when a disk holds more
// than one LUKS volume.
Result<LuksRegion> find_luks_volume(const std::filesystem::path& image, std::optional<int> partition = std::nullopt);

}  // namespace kiln
