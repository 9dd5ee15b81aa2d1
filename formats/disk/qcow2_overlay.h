// Qcow2Overlay: an empty qcow2 image whose reads fall through to a backing
// file, the copy-on-write layer each instance writes instead of the shared
// baked image. Written directly (four clusters of metadata), because
// `qemu-img create` costs a process start per instance and kiln makes
// instances in milliseconds.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string_view>

#include "base/error.h"

namespace kiln {

// Creates `overlay` (replacing it) over `backing` (absolute path, in
// `backing_format`, "raw" or "qcow2"), `virtual_size` bytes, as
// qemu-img create -f qcow2 -F FORMAT -b would.
Result<> create_qcow2_overlay(const std::filesystem::path& overlay, const std::filesystem::path& backing,
                              uint64_t virtual_size, std::string_view backing_format = "raw");

// The size a qcow2 image presents to the guest, from its header.
Result<uint64_t> qcow2_virtual_size(const std::filesystem::path& image);

}  // namespace kiln
