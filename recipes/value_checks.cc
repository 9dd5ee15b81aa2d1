#include "recipes/value_checks.h"

#include <regex>

#include <fmt/format.h>

namespace kiln {
namespace {

bool matches(std::string_view value, const char* pattern) {
  std::regex re(pattern);
  return std::regex_match(value.begin(), value.end(), re);
}

}  // namespace

std::string check_text_line(std::string_view value) {
  for (unsigned char c : value)
    if (c < 0x20 || c == 0x7f)
      return c == 0 ? "a NUL character here would cut the value short" : "control characters are not allowed here";
  return {};
}

std::string check_version(std::string_view value) {
  if (std::string problem = check_text_line(value); !problem.empty()) return problem;
  if (value.find("..") != std::string_view::npos) return "'..' is not allowed (the version names published files)";
  if (matches(value, "[A-Za-z0-9][A-Za-z0-9.+~_:-]{0,63}")) return {};
  return "expected 1 to 64 letters, digits, '.', '+', '~', '_', ':' or '-', starting with a letter or digit "
         "(no '/': the version names published files)";
}

std::string check_image_name(std::string_view value) {
  if (matches(value, "[a-z0-9][a-z0-9._-]{0,62}")) return {};
  return "expected 1 to 63 characters of a-z, 0-9, '.', '_' or '-', starting with a letter or digit";
}

std::string check_word(std::string_view value) {
  if (matches(value, "[a-z0-9][a-z0-9.+-]*")) return {};
  return "expected lower-case letters, digits, '.', '+' or '-'";
}

std::string check_module(std::string_view value) {
  if (matches(value, "[A-Za-z0-9][A-Za-z0-9_-]{0,63}")) return {};
  return "not a kernel module name (letters, digits, '_' or '-')";
}

std::string check_package(std::string_view value) {
  if (matches(value, "[a-z0-9][a-z0-9.+-]+(:[a-z0-9-]+)?([=/][A-Za-z0-9.+~:-]+)?")) return {};
  return "not a Debian package name (optionally NAME=VERSION or NAME/RELEASE)";
}

std::string check_mirror(std::string_view value) {
  if (value.empty() || value.starts_with("http://") || value.starts_with("https://") ||
      value.starts_with("file:/") || value.starts_with("ftp://"))
    return {};
  return "expected an http://, https://, ftp:// or file:/ URI";
}

std::string check_fs_label(std::string_view value) {
  if (value.size() <= 16) return {};
  return "an ext4 label has at most 16 bytes";
}

std::string check_hostname(std::string_view value) {
  if (value.size() <= 253 &&
      matches(value, "[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"))
    return {};
  return "not a valid host name (letters, digits and '-', dot-separated labels of at most 63)";
}

std::string check_timezone(std::string_view value) {
  if (matches(value, "[A-Za-z0-9_+-]+(/[A-Za-z0-9_+-]+)*")) return {};
  return "expected a zone name such as \"UTC\" or \"Europe/Paris\"";
}

std::string check_locale(std::string_view value) {
  if (value == "C" || value == "POSIX" || matches(value, "[A-Za-z]{1,3}(_[A-Z]{2})?(\\.[A-Za-z0-9-]+)?(@[a-z]+)?"))
    return {};
  return "expected a locale such as \"C.UTF-8\" or \"en_US.UTF-8\"";
}

std::string check_user_name(std::string_view value) {
  if (matches(value, "[a-z_][a-z0-9_-]{0,31}")) return {};
  return "expected a user name of at most 32 characters: a-z, 0-9, '_' or '-', not starting with a digit";
}

std::string check_image_path(std::string_view value) {
  if (std::string problem = check_text_line(value); !problem.empty()) return problem;
  if (!value.starts_with('/')) return "expected an absolute path inside the image";
  if (value == "/") return "cannot operate on the image's root directory itself";
  if (value.find("//") != std::string_view::npos || value.ends_with('/'))
    return "expected a normalised path (no '//' and no trailing '/')";
  if (matches(value, "(.*/)?\\.\\.?(/.*)?")) return "'.' and '..' components are not allowed";
  return {};
}

std::string check_mountpoint(std::string_view value) {
  if (value == "/") return {};
  return check_image_path(value);
}

// lvm(8), "VALID NAMES": the names device-mapper and /dev/VG/LV can carry,
// minus the prefixes and suffixes lvm2 keeps for its own sub-volumes.
std::string check_lvm_name(std::string_view value) {
  if (value.size() > 127) return "an LVM name has at most 127 characters";
  if (!matches(value, "[A-Za-z0-9+_.][A-Za-z0-9+_.-]*"))
    return "expected letters, digits, '+', '_', '.' and '-', not starting with '-'";
  if (value == "." || value == "..") return "'.' and '..' are not names";
  for (std::string_view reserved : {"snapshot", "pvmove"})
    if (value.starts_with(reserved)) return fmt::format("names starting with \"{}\" are reserved by lvm2", reserved);
  for (std::string_view reserved : {"_cdata", "_cmeta", "_corig", "_cpool", "_cvol", "_imeta", "_iorig",
                                    "_mimage", "_mlog", "_pmspare", "_rimage", "_rmeta", "_tdata",
                                    "_tmeta", "_vdata", "_vorigin", "_wcorig"})
    if (value.find(reserved) != std::string_view::npos)
      return fmt::format("names containing \"{}\" are reserved by lvm2", reserved);
  return {};
}

std::string check_mapping_name(std::string_view value) {
  if (value.size() <= 127 && matches(value, "[A-Za-z0-9_+][A-Za-z0-9_.+-]*")) return {};
  return "expected at most 127 letters, digits, '_', '.', '+' or '-', as in /dev/mapper/NAME";
}

std::string check_cipher(std::string_view value) {
  if (matches(value, "[a-z0-9_]+-[a-z0-9]+(-[a-z0-9]+(:[a-z0-9]+)?)?")) return {};
  return "expected CIPHER-MODE-IV as cryptsetup takes it, e.g. \"aes-xts-plain64\"";
}

}  // namespace kiln
