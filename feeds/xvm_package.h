// The xvm package: what goes into an xvm archive for a baked image, and the
// checks that make one trustworthy again on the way out.
//
// An xvm holds xvm.xml and its signature (signature.asc), manifest.txt (sha1
// of every other member) and its signature (mf-signature.asc), and, added by
// kiln, manifest.sha256 with its own signature (manifest.sha256.asc), since
// kiln trusts only what a signature covers and does not rest that on sha1.
// Then the bake's manifest.json, the domain configs, and every image
// gzip-compressed as NAME.img.gz.
//
// Verifying runs in a fixed order: the signatures against the trusted keys,
// then that every member is listed and every listed member present, then
// every sum. Unpacking expands each image, holding it to the size xvm.xml
// declares and checking its sha256 against manifest.json once expanded.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "base/error.h"
#include "base/reporter.h"
#include "crypto/openpgp.h"
#include "feeds/baked_image.h"
#include "feeds/checksum_manifest.h"
#include "feeds/xvm_archive.h"
#include "feeds/xvm_xml.h"

namespace kiln {

inline constexpr std::string_view kXvmXml = "xvm.xml";
inline constexpr std::string_view kXvmXmlSignature = "signature.asc";
inline constexpr std::string_view kManifestTxt = "manifest.txt";
inline constexpr std::string_view kManifestTxtSignature = "mf-signature.asc";
inline constexpr std::string_view kManifestSha256 = "manifest.sha256";
inline constexpr std::string_view kManifestSha256Signature = "manifest.sha256.asc";
inline constexpr std::string_view kBakeManifest = "manifest.json";

// The member an image file travels as: "disk.raw" -> "disk.raw.img.gz",
// "root.img" -> "root.img.gz".
std::string image_member_name(std::string_view file);

// Whether a bake artifact is a small text (a domain config) stored as is,
// rather than an image stored gzip-compressed.
bool is_config_artifact(std::string_view file);

// The members of a package in archive order, each with its digests: what the
// manifests list and the signatures cover.
struct PackageMember {
  std::string name;
  std::filesystem::path source;
  std::string sha1;
  std::string sha256;
};

// The three signed texts and their signatures.
struct PackageSignatures {
  std::string xvm_xml_signature;
  std::string manifest_txt_signature;
  std::string manifest_sha256_signature;
};

// Writes xvm.xml, the manifests and their signatures into `staging`, and the
// whole package as an xvm at `target` (atomically). `payload` lists the
// members after the signed texts (manifest.json, configs, images), already
// in `staging` or elsewhere, with their digests.
Result<TarWritten> write_xvm_package(const XvmDescription& description, const std::vector<PackageMember>& payload,
                                   const SigningKey& key, const std::filesystem::path& staging,
                                   const std::filesystem::path& target, int64_t mtime,
                                   const std::function<void(uint64_t, uint64_t)>& progress = {});

struct PackageBuildOptions {
  int gzip_level = 6;
  unsigned threads = 0;  // 0: one per core
  int64_t mtime = 0;     // of every member
};

// Builds the xvm of a baked image at `target`, using `staging` for the
// compressed images.
Result<TarWritten> build_xvm(const BakedImage& image, const SigningKey& key, const std::filesystem::path& staging,
                           const std::filesystem::path& target, const PackageBuildOptions& options,
                           Reporter& reporter);

// What a verified package says, for unpacking.
struct VerifiedXvm {
  XvmDescription description;
  std::string bake_manifest;                // manifest.json's text
  std::optional<SignatureInfo> signer;      // empty when not verified
  ChecksumManifest sha256;                  // empty when the package has none
};

struct VerifyOptions {
  unsigned threads = 0;
  std::function<void(uint64_t done, uint64_t total)> progress;  // bytes hashed
};

// Checks a package: signatures (skipped when `keys` is null), coverage, sums.
Result<VerifiedXvm> verify_xvm(const XvmArchive& archive, const TrustedKeys* keys, const VerifyOptions& options);

struct UnpackedFile {
  std::string file;
  uint64_t size = 0;
  std::string sha256;
};

// Expands a verified package's files into `dir` (which must exist and be
// empty): each image held to its declared size and checked against
// manifest.json, configs as they are. manifest.json itself is not written.
Result<std::vector<UnpackedFile>> unpack_xvm(const XvmArchive& archive, const VerifiedXvm& verified,
                                             const std::filesystem::path& dir, const VerifyOptions& options);

}  // namespace kiln
