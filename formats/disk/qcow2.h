// Qcow2: turns a finished raw disk image into a qcow2 image with qemu-img,
// for hypervisors and clouds that want a compact, copy-on-write base.
#pragma once

#include <filesystem>

#include "base/error.h"

namespace kiln {

// Converts `raw` into `qcow2`. The output is written beside its final name
// and renamed into place only when qemu-img succeeded, so `qcow2` is either
// complete or absent (an older file there stays until the rename).
Result<> convert_to_qcow2(const std::filesystem::path& raw, const std::filesystem::path& qcow2);

}  // namespace kiln
