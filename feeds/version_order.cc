#include "feeds/version_order.h"

#include <cctype>
#include <cstdint>

namespace kiln {
namespace {

// dpkg's weight of a character in the non-digit parts: '~' sorts before
// everything (even the end), letters before other characters.
int weight(char c) {
  if (c == '~') return -1;
  if (std::isdigit(static_cast<unsigned char>(c))) return 0;
  if (std::isalpha(static_cast<unsigned char>(c))) return c;
  return c + 256;
}

int compare_part(std::string_view a, std::string_view b) {
  size_t i = 0, j = 0;
  while (i < a.size() || j < b.size()) {
    while ((i < a.size() && !std::isdigit(static_cast<unsigned char>(a[i]))) ||
           (j < b.size() && !std::isdigit(static_cast<unsigned char>(b[j])))) {
      int wa = i < a.size() ? weight(a[i]) : 0;
      int wb = j < b.size() ? weight(b[j]) : 0;
      if (wa != wb) return wa < wb ? -1 : 1;
      ++i;
      ++j;
    }
    while (i < a.size() && a[i] == '0') ++i;
    while (j < b.size() && b[j] == '0') ++j;
    int first_difference = 0;
    while (i < a.size() && std::isdigit(static_cast<unsigned char>(a[i])) && j < b.size() &&
           std::isdigit(static_cast<unsigned char>(b[j]))) {
      if (!first_difference) first_difference = a[i] - b[j];
      ++i;
      ++j;
    }
    if (i < a.size() && std::isdigit(static_cast<unsigned char>(a[i]))) return 1;
    if (j < b.size() && std::isdigit(static_cast<unsigned char>(b[j]))) return -1;
    if (first_difference) return first_difference < 0 ? -1 : 1;
  }
  return 0;
}

struct Parts {
  uint64_t epoch = 0;
  std::string_view upstream;
  std::string_view revision;
};

Parts split(std::string_view version) {
  Parts parts;
  if (size_t colon = version.find(':'); colon != std::string_view::npos) {
    std::string_view digits = version.substr(0, colon);
    bool numeric = !digits.empty() && digits.size() < 10;
    for (char c : digits) numeric = numeric && std::isdigit(static_cast<unsigned char>(c));
    if (numeric) {
      for (char c : digits) parts.epoch = parts.epoch * 10 + static_cast<uint64_t>(c - '0');
      version.remove_prefix(colon + 1);
    }
  }
  if (size_t dash = version.rfind('-'); dash != std::string_view::npos) {
    parts.revision = version.substr(dash + 1);
    version = version.substr(0, dash);
  }
  parts.upstream = version;
  return parts;
}

}  // namespace

int compare_versions(std::string_view a, std::string_view b) {
  Parts pa = split(a);
  Parts pb = split(b);
  if (pa.epoch != pb.epoch) return pa.epoch < pb.epoch ? -1 : 1;
  if (int upstream = compare_part(pa.upstream, pb.upstream)) return upstream;
  return compare_part(pa.revision, pb.revision);
}

}  // namespace kiln
