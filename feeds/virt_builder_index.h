// The virt-builder repository index: "[os-version]" sections of "key=value"
// fields, a value continued on lines that start with a space (notes). kiln
// keeps every section and field it reads, replacing only its own image's
// section, so a repository may hold images from other tools too.
//
// virt-builder (1.48, Debian 12) takes templates as is or xz-compressed;
// kiln publishes them xz-compressed (feeds/xz_compress.h), with
// checksum[sha512] of the .xz file.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/error.h"

namespace kiln {

struct IndexSection {
  std::string id;  // the os-version, as in `virt-builder ID`
  std::vector<std::pair<std::string, std::string>> fields;

  const std::string* get(std::string_view key) const;
  void set(const std::string& key, const std::string& value);
};

struct VirtBuilderIndex {
  std::vector<IndexSection> sections;

  IndexSection* find(std::string_view id);
  // Replaces the section with the same id where it stands, or appends it.
  void upsert(IndexSection section);
};

// Errors carry FILE:LINE: a field outside a section, a line without '=', a
// duplicate section or field, an id virt-builder would not accept.
Result<VirtBuilderIndex> parse_virt_builder_index(std::string_view text, std::string_view file_name);
Result<std::string> write_virt_builder_index(const VirtBuilderIndex& index);

}  // namespace kiln
