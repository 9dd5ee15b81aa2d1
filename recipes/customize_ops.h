// CustomizeOps: the one table of customisation operations. Each entry is a
// [customize] key with its argument form, its documentation and the phase in
// which it runs; the recipe parser, `kiln help customize`, the generated
// docs and the builder's dispatcher all follow this table.
#pragma once

#include <span>
#include <string_view>

namespace kiln {

enum class CustomizePhase {
  kInImage,  // runs programs inside the image (apt-get, locale-gen, run)
  kOffline,  // edits the filesystem directly, no program runs
};

struct CustomizeOpInfo {
  std::string_view key;       // [customize] key, e.g. "hostname"
  std::string_view argument;  // e.g. "NAME" or "[[customize.users]] tables"
  std::string_view example;   // a TOML line or two
  std::string_view doc;
  CustomizePhase phase;
};

// The operations, in the order they are applied.
std::span<const CustomizeOpInfo> customize_operations();

// The actions of a [[customize.files]] entry (exactly one per entry, or none
// to change only mode/owner of an existing path).
struct FileActionInfo {
  std::string_view key;
  std::string_view argument;
  std::string_view doc;
};
std::span<const FileActionInfo> file_actions();

// The keys of a [[customize.users]] entry.
struct UserKeyInfo {
  std::string_view key;
  std::string_view argument;
  std::string_view doc;
};
std::span<const UserKeyInfo> user_keys();

}  // namespace kiln
