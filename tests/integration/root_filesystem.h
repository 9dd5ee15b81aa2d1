// Where a baked image's root filesystem is, for the tools that read it:
// root.img when the recipe asked for "partitions", else the root partition
// of disk.raw (the default recipe's case), which e2fsprogs and libext2fs open
// as "disk.raw?offset=N" and blkid with -O N.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

#include <nlohmann/json.hpp>

#include "tests/test_support.h"

namespace kiln::testing {

// The root partition's byte offset in DIR/disk.raw, 0 for root.img.
inline uint64_t root_filesystem_offset(const std::filesystem::path& image_dir) {
  if (std::filesystem::exists(image_dir / "root.img")) return 0;
  auto manifest = nlohmann::json::parse(read_text(image_dir / "manifest.json"));
  for (const auto& partition : manifest["image"]["partitions"])
    if (partition["name"] == "root") return partition["offset"].get<uint64_t>();
  ADD_FAILURE() << image_dir << ": no root.img and no root partition in its manifest";
  return 0;
}

// The file that holds the root filesystem (at root_filesystem_offset).
inline std::filesystem::path root_filesystem_file(const std::filesystem::path& image_dir) {
  return std::filesystem::exists(image_dir / "root.img") ? image_dir / "root.img" : image_dir / "disk.raw";
}

// The root filesystem as debugfs and e2fsck take it.
inline std::string root_filesystem(const std::filesystem::path& image_dir) {
  uint64_t offset = root_filesystem_offset(image_dir);
  std::string file = root_filesystem_file(image_dir).string();
  return offset == 0 ? file : file + "?offset=" + std::to_string(offset);
}

}  // namespace kiln::testing
