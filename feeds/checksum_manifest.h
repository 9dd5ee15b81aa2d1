// Checksum manifests: the xvm archive's manifest.txt (sha1, kept for the
// vmcast format) and manifest.sha256 (what kiln trusts). Both are written in
// the coreutils form, "DIGEST  NAME" per line, so `sha1sum -c manifest.txt`
// and `sha256sum -c manifest.sha256` check an unpacked archive by hand. The
// reader also takes the binary-mode marker ("DIGEST *NAME") and the BSD form
// ("SHA1 (NAME) = DIGEST").
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"
#include "base/hash.h"

namespace kiln {

struct ManifestEntry {
  std::string name;
  std::string digest;  // lower-case hex

  bool operator==(const ManifestEntry&) const = default;
};

struct ChecksumManifest {
  HashAlgorithm algorithm = HashAlgorithm::kSha256;
  std::vector<ManifestEntry> entries;  // in file order, names unique

  const ManifestEntry* find(std::string_view name) const;
};

// "sha1", "sha256", "sha512".
std::string_view algorithm_name(HashAlgorithm algorithm);

// Writes the entries in the given order. Names must be non-empty and free of
// control characters and backslashes (which coreutils would escape).
Result<std::string> write_checksum_manifest(const ChecksumManifest& manifest);

// Parses a manifest whose digests are all of `algorithm`, refusing the same
// names the writer refuses. Errors carry FILE:LINE and say what is wrong.
Result<ChecksumManifest> parse_checksum_manifest(std::string_view text, HashAlgorithm algorithm,
                                                 std::string_view file_name);

}  // namespace kiln
