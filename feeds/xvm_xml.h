// xvm.xml: the description of the appliance inside an xvm archive, in the
// shape of the published vmcast sample: the appliance's names and version,
// its virtual machine (memory, block devices) and one `vdi` per image member,
// whose `src="file:///NAME.img.gz"` names the member in the archive.
//
// kiln adds two attributes to a vdi: `size`, the image's size once expanded
// (the limit a puller holds the gzip data to), and `file`, the name it has
// in a bake output directory. Other readers ignore them.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"

namespace kiln {

// The four texts of a <name xml:lang="en"> element.
struct XvmNames {
  std::string label;
  std::string shortdesc;
  std::string longdesc;
  std::string detail;

  bool operator==(const XvmNames&) const = default;
};

struct XvmVbd {
  std::string name;  // the guest's device, "xvda"
  std::string vdi;   // the vdi it attaches
  std::string mode;  // "RW" or "R"

  bool operator==(const XvmVbd&) const = default;
};

struct XvmVm {
  std::string name;
  XvmNames names;
  std::string memory_static_min;  // as written, "1024 MiB"
  std::vector<XvmVbd> vbds;

  bool operator==(const XvmVm&) const = default;
};

struct XvmVdi {
  std::string name;
  std::string member;       // the archive member src names, "disk.raw.img.gz"
  std::string variety;      // "system", or kiln's "kernel" and "ramdisk"
  std::string compression;  // "gzip", or empty for a member stored as is
  std::optional<uint64_t> size;  // kiln: bytes once expanded
  std::string file;              // kiln: its name in a bake output, "disk.raw"
  std::string label;

  bool operator==(const XvmVdi&) const = default;
};

struct XvmDescription {
  XvmNames names;
  std::string version;
  std::vector<XvmVm> vms;
  std::vector<XvmVdi> vdis;

  const XvmVdi* find_vdi(std::string_view name) const;
  bool operator==(const XvmDescription&) const = default;
};

// Reads xvm.xml. Errors carry FILE:LINE: malformed XML, a vdi whose src
// points outside the archive ("../", an absolute path, another URI scheme),
// a compression other than gzip, duplicate names, a vbd naming no vdi.
Result<XvmDescription> parse_xvm_xml(std::string_view text, std::string_view file_name);

// Writes xvm.xml; the description must be one parse_xvm_xml accepts.
Result<std::string> write_xvm_xml(const XvmDescription& description);

// Whether `name` is a safe archive member name: relative, without "." or
// ".." components, empty components, backslashes or control characters.
bool is_safe_member_name(std::string_view name);

}  // namespace kiln
