#include "recipes/value_checks.h"

#include <regex>

namespace kiln {
namespace {

bool matches(std::string_view value, const char* pattern) {
  std::regex re(pattern);
  return std::regex_match(value.begin(), value.end(), re);
}

}  // namespace

std::string check_image_name(std::string_view value) {
  if (matches(value, "[a-z0-9][a-z0-9._-]{0,62}")) return {};
  return "expected 1 to 63 characters of a-z, 0-9, '.', '_' or '-', starting with a letter or digit";
}

std::string check_word(std::string_view value) {
  if (matches(value, "[a-z0-9][a-z0-9.+-]*")) return {};
  return "expected lower-case letters, digits, '.', '+' or '-'";
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
  if (!value.starts_with('/')) return "expected an absolute path inside the image";
  if (value == "/") return "cannot operate on the image's root directory itself";
  if (value.find("//") != std::string_view::npos || value.ends_with('/'))
    return "expected a normalised path (no '//' and no trailing '/')";
  if (matches(value, "(.*/)?\\.\\.?(/.*)?")) return "'.' and '..' components are not allowed";
  return {};
}

}  // namespace kiln
