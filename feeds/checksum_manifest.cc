#include "feeds/checksum_manifest.h"

#include <algorithm>

namespace kiln {
namespace {

size_t digest_length(HashAlgorithm algorithm) {
  switch (algorithm) {
    case HashAlgorithm::kSha1: return 40;
    case HashAlgorithm::kSha256: return 64;
    case HashAlgorithm::kSha512: return 128;
  }
  return 0;
}

std::string_view bsd_tag(HashAlgorithm algorithm) {
  switch (algorithm) {
    case HashAlgorithm::kSha1: return "SHA1";
    case HashAlgorithm::kSha256: return "SHA256";
    case HashAlgorithm::kSha512: return "SHA512";
  }
  return "";
}

bool is_hex(std::string_view text) {
  return std::all_of(text.begin(), text.end(), [](char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
  });
}

// coreutils escapes names with a backslash or newline; such names have no
// business in an archive anyway.
bool is_plain_name(std::string_view name) {
  return !name.empty() && std::none_of(name.begin(), name.end(), [](char c) {
    return c == '\\' || static_cast<unsigned char>(c) < 0x20 || c == 0x7f;
  });
}

std::string lower(std::string_view text) {
  std::string out(text);
  std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return std::tolower(c); });
  return out;
}

}  // namespace

std::string_view algorithm_name(HashAlgorithm algorithm) {
  switch (algorithm) {
    case HashAlgorithm::kSha1: return "sha1";
    case HashAlgorithm::kSha256: return "sha256";
    case HashAlgorithm::kSha512: return "sha512";
  }
  return "";
}

const ManifestEntry* ChecksumManifest::find(std::string_view name) const {
  for (const ManifestEntry& entry : entries)
    if (entry.name == name) return &entry;
  return nullptr;
}

Result<std::string> write_checksum_manifest(const ChecksumManifest& manifest) {
  std::string out;
  for (const ManifestEntry& entry : manifest.entries) {
    if (!is_plain_name(entry.name))
      return fail(ErrorKind::kBadInput,
                  "cannot list '{}' in a checksum manifest: empty, or has a backslash or control character", entry.name);
    if (entry.digest.size() != digest_length(manifest.algorithm) || !is_hex(entry.digest))
      return fail(ErrorKind::kFailed, "{}: '{}' is not a {} digest", entry.name, entry.digest,
                  algorithm_name(manifest.algorithm));
    out += lower(entry.digest);
    out += "  ";
    out += entry.name;
    out += '\n';
  }
  return out;
}

Result<ChecksumManifest> parse_checksum_manifest(std::string_view text, HashAlgorithm algorithm,
                                                 std::string_view file_name) {
  ChecksumManifest manifest;
  manifest.algorithm = algorithm;
  const size_t length = digest_length(algorithm);
  const std::string tag = std::string(bsd_tag(algorithm)) + " (";
  int line_number = 0;
  while (!text.empty()) {
    ++line_number;
    size_t newline = text.find('\n');
    std::string_view line = text.substr(0, newline);
    text.remove_prefix(newline == std::string_view::npos ? text.size() : newline + 1);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty()) continue;
    Location where{std::string(file_name), line_number, 0};
    std::string_view name;
    std::string_view digest;
    if (line.starts_with(tag)) {
      size_t close = line.rfind(") = ");
      if (close == std::string_view::npos || close < tag.size())
        return fail_at(where, "expected '{}NAME) = DIGEST'", tag);
      name = line.substr(tag.size(), close - tag.size());
      digest = line.substr(close + 4);
    } else {
      if (line.starts_with('\\'))
        return fail_at(where, "escaped file names are not supported in an xvm manifest");
      if (line.size() < length + 2 || (line[length] != ' ') || (line[length + 1] != ' ' && line[length + 1] != '*'))
        return fail_at(where, "expected '{}-digit {} digest, two spaces, file name'", length,
                       algorithm_name(algorithm));
      digest = line.substr(0, length);
      name = line.substr(length + 2);
    }
    if (digest.size() != length || !is_hex(digest))
      return fail_at(where, "'{}' is not a {} digest ({} hex digits)", digest, algorithm_name(algorithm), length);
    if (name.empty()) return fail_at(where, "the file name is missing");
    if (!is_plain_name(name))
      return fail_at(where, "the file name has a backslash or a control character");
    if (manifest.find(name))
      return fail_at(where, "'{}' is listed twice", name);
    manifest.entries.push_back({std::string(name), lower(digest)});
  }
  return manifest;
}

}  // namespace kiln
