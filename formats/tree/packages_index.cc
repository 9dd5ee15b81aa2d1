#include "formats/tree/packages_index.h"

#include <algorithm>
#include <cctype>

#include "base/files.h"
#include "base/hash.h"
#include "formats/tree/deb822.h"

namespace kiln {
namespace {

std::string quoted(std::string_view text, std::string_view bad) {
  std::string out;
  for (char c : text) {
    auto byte = static_cast<unsigned char>(c);
    if (bad.find(c) != std::string_view::npos || c == '%' || !std::isprint(byte) || c == ' ') {
      out += fmt::format("%{:02x}", byte);
    } else {
      out += c;
    }
  }
  return out;
}

std::string lower(std::string_view text) {
  std::string out(text);
  std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return std::tolower(c); });
  return out;
}

}  // namespace

std::string apt_archive_file_name(const IndexedPackage& package) {
  return quoted(package.name, "_:") + "_" + quoted(package.version, "_:") + "_" +
         quoted(package.architecture, "_:.") + ".deb";
}

void PackagesIndex::add(std::string_view packages_text) {
  for_each_paragraph(packages_text, [&](const Deb822Paragraph& paragraph) {
    std::string_view sha256 = paragraph.get("SHA256");
    if (!is_sha256_hex(sha256) || paragraph.get("Package").empty()) return;
    IndexedPackage package;
    package.name = paragraph.get("Package");
    package.version = paragraph.get("Version");
    package.architecture = paragraph.get("Architecture");
    package.sha256 = lower(sha256);
    package.size = std::strtoull(std::string(paragraph.get("Size")).c_str(), nullptr, 10);
    if (by_sha256_.contains(package.sha256)) return;  // one file listed by two indexes
    by_sha256_.emplace(package.sha256, packages_.size());
    by_file_name_.emplace(apt_archive_file_name(package), packages_.size());
    packages_.push_back(std::move(package));
  });
}

Result<PackagesIndex> PackagesIndex::load_apt_lists(const std::filesystem::path& lists_dir) {
  PackagesIndex index;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(lists_dir, ec)) {
    if (!entry.is_regular_file() || !entry.path().filename().string().ends_with("_Packages")) continue;
    KILN_ASSIGN(std::string text, read_file(entry.path()));
    index.add(text);
  }
  if (ec) return fail_errno("cannot list", lists_dir.string(), ec.value());
  return index;
}

const IndexedPackage* PackagesIndex::find_by_sha256(std::string_view sha256) const {
  auto found = by_sha256_.find(lower(sha256));
  return found == by_sha256_.end() ? nullptr : &packages_[found->second];
}

const IndexedPackage* PackagesIndex::find_by_archive_file_name(std::string_view file_name) const {
  auto found = by_file_name_.find(std::string(file_name));
  return found == by_file_name_.end() ? nullptr : &packages_[found->second];
}

}  // namespace kiln
