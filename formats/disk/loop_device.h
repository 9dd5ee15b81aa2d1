// LoopDevice: a byte range of an image file as a block device, for the one
// bake step that needs the kernel's view of a disk: lvm2's tools write LVM
// metadata only to block devices. (Nothing else on the bake path uses a
// loop device; filesystems, tables and encryption are written to the file.)
//
// The device is set up with autoclear, so the kernel detaches it as soon as
// the last descriptor closes: when the LoopDevice goes (error, Ctrl-C), and
// even when kiln itself is killed. The destructor also detaches it
// explicitly.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

#include "base/error.h"
#include "base/files.h"

namespace kiln {

class LoopDevice {
 public:
  // Attaches [offset, offset + size) of `image`, read-write.
  static Result<LoopDevice> attach(const std::filesystem::path& image, uint64_t offset, uint64_t size);
  LoopDevice(LoopDevice&&) noexcept = default;
  LoopDevice& operator=(LoopDevice&&) = delete;
  ~LoopDevice();

  const std::string& path() const { return path_; }  // "/dev/loop3"
  // Detaches now; errors are reported (the destructor can only try).
  Result<> detach();

 private:
  LoopDevice(std::string path, UniqueFd fd) : path_(std::move(path)), fd_(std::move(fd)) {}
  std::string path_;
  UniqueFd fd_;
};

}  // namespace kiln
