// SaveFile: what `kiln save` writes and `kiln restore` reads. A header holds
// the instance record (how to start the same VM again, which overlays it
// uses); QEMU's migration stream follows at a 4 KiB boundary, so QEMU can
// read and write it through a plain file descriptor.
//   "KILN-SAVE 1\n" JSON-header "\n" padding ... stream
#pragma once

#include <cstdint>
#include <filesystem>

#include "base/error.h"
#include "runtime/instance.h"

namespace kiln {

struct SaveHeader {
  InstanceRecord record;
  uint64_t stream_offset = 0;
};

// Writes the header at the start of `fd`; returns where the stream starts.
Result<uint64_t> write_save_header(int fd, const InstanceRecord& record, const std::string& name);
Result<SaveHeader> read_save_header(const std::filesystem::path& file);

}  // namespace kiln
