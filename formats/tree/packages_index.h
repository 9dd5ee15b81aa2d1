// PackagesIndex: the .deb files an apt Packages index lists, with the SHA256
// and size the archive signed for each. kiln reads it from the lists apt has
// already fetched and verified (InRelease signature, then the Packages
// file's hash), so a hash found here is one the archive vouches for: the
// package cache serves and keeps only files whose hash it lists.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "base/error.h"

namespace kiln {

struct IndexedPackage {
  std::string name;
  std::string version;
  std::string architecture;
  std::string sha256;  // lower-case hex
  uint64_t size = 0;
};

// The name apt gives a package's file in /var/cache/apt/archives:
// NAME_VERSION_ARCH.deb, with '_', ':' and '%' (and '.' in the architecture)
// written as %xx, as apt's QuoteString does.
std::string apt_archive_file_name(const IndexedPackage& package);

class PackagesIndex {
 public:
  // Adds the paragraphs of one Packages file; those without a SHA256 are skipped.
  void add(std::string_view packages_text);
  // Every uncompressed *_Packages file in an apt lists directory.
  static Result<PackagesIndex> load_apt_lists(const std::filesystem::path& lists_dir);

  const IndexedPackage* find_by_sha256(std::string_view sha256) const;
  const IndexedPackage* find_by_archive_file_name(std::string_view file_name) const;
  size_t size() const { return packages_.size(); }

 private:
  std::vector<IndexedPackage> packages_;
  std::unordered_map<std::string, size_t> by_sha256_;
  std::unordered_map<std::string, size_t> by_file_name_;
};

}  // namespace kiln
