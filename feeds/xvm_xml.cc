#include "feeds/xvm_xml.h"

#include <algorithm>
#include <charconv>
#include <set>
#include <sstream>

#include <pugixml.hpp>

#include "base/files.h"

namespace kiln {
namespace {

constexpr std::string_view kFileScheme = "file:///";

int line_of(std::string_view text, ptrdiff_t offset) {
  if (offset < 0) return 0;
  size_t end = std::min(static_cast<size_t>(offset), text.size());
  return 1 + static_cast<int>(std::count(text.begin(), text.begin() + static_cast<ptrdiff_t>(end), '\n'));
}

class Reader {
 public:
  Reader(std::string_view text, std::string_view file_name) : text_(text), file_(file_name) {}

  Location at(const pugi::xml_node& node) const { return {std::string(file_), line_of(text_, node.offset_debug()), 0}; }

  XvmNames names(const pugi::xml_node& parent) const {
    pugi::xml_node node = parent.child("name");
    return {node.child("label").text().as_string(), node.child("shortdesc").text().as_string(),
            node.child("longdesc").text().as_string(), node.child("detail").text().as_string()};
  }

  Result<XvmVdi> vdi(const pugi::xml_node& node) const {
    XvmVdi vdi;
    vdi.name = node.attribute("name").as_string();
    if (vdi.name.empty()) return fail_at(at(node), "a vdi has no name");
    std::string src = node.attribute("src").as_string();
    std::string_view member = src;
    if (member.starts_with(kFileScheme)) {
      member.remove_prefix(kFileScheme.size());
    } else if (member.find("://") != std::string_view::npos || member.starts_with("file:")) {
      return fail_at(at(node), "vdi '{}' has src '{}', outside the archive; an xvm's images are its own members "
                               "(src=\"file:///NAME.img.gz\")", vdi.name, src);
    }
    if (member.empty()) return fail_at(at(node), "vdi '{}' has no src", vdi.name);
    if (!is_safe_member_name(member))
      return fail_at(at(node), "vdi '{}' has src '{}': not a plain member name (no '..', no absolute path)",
                     vdi.name, src);
    vdi.member = member;
    vdi.variety = node.attribute("variety").as_string();
    vdi.compression = node.attribute("compression").as_string();
    if (vdi.compression == "none") vdi.compression.clear();
    if (!vdi.compression.empty() && vdi.compression != "gzip")
      return fail_at(at(node), "vdi '{}' has compression '{}'; only gzip is supported", vdi.name, vdi.compression);
    if (pugi::xml_attribute size = node.attribute("size")) {
      std::string_view digits = size.value();
      uint64_t value = 0;
      auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
      if (digits.empty() || ec != std::errc() || end != digits.data() + digits.size())
        return fail_at(at(node), "vdi '{}' has size '{}', not a number of bytes", vdi.name, digits);
      vdi.size = value;
    }
    vdi.file = node.attribute("file").as_string();
    if (!vdi.file.empty() && (vdi.file.find('/') != std::string::npos || !is_safe_member_name(vdi.file)))
      return fail_at(at(node), "vdi '{}' has file '{}', not a plain file name", vdi.name, vdi.file);
    vdi.label = node.child("name").child("label").text().as_string();
    return vdi;
  }

 private:
  std::string_view text_;
  std::string_view file_;
};

void put_names(pugi::xml_node parent, const XvmNames& names, bool full) {
  pugi::xml_node node = parent.append_child("name");
  if (full) node.append_attribute("xml:lang") = "en";
  node.append_child("label").text() = names.label.c_str();
  if (!full) return;
  node.append_child("shortdesc").text() = names.shortdesc.c_str();
  node.append_child("longdesc").text() = names.longdesc.c_str();
  node.append_child("detail").text() = names.detail.c_str();
}

}  // namespace

bool is_safe_member_name(std::string_view name) {
  size_t start = 0;
  while (start <= name.size()) {
    size_t slash = name.find('/', start);
    if (slash == std::string_view::npos) slash = name.size();
    if (!is_plain_file_name(name.substr(start, slash - start))) return false;
    start = slash + 1;
  }
  return true;
}

const XvmVdi* XvmDescription::find_vdi(std::string_view name) const {
  for (const XvmVdi& vdi : vdis)
    if (vdi.name == name) return &vdi;
  return nullptr;
}

Result<XvmDescription> parse_xvm_xml(std::string_view text, std::string_view file_name) {
  pugi::xml_document doc;
  pugi::xml_parse_result parsed = doc.load_buffer(text.data(), text.size());
  if (!parsed)
    return fail_at({std::string(file_name), line_of(text, parsed.offset), 0}, "not well-formed XML: {}",
                   parsed.description());
  Reader reader(text, file_name);
  pugi::xml_node appliance = doc.child("appliance");
  if (!appliance)
    return fail_at({std::string(file_name), 1, 0}, "the root element is <{}>, not <appliance>",
                   doc.document_element().name());
  XvmDescription out;
  out.names = reader.names(appliance);
  out.version = appliance.child("version").text().as_string();
  std::set<std::string> members;
  for (pugi::xml_node node : appliance.children("vdi")) {
    KILN_ASSIGN(XvmVdi vdi, reader.vdi(node));
    if (out.find_vdi(vdi.name)) return fail_at(reader.at(node), "vdi '{}' is described twice", vdi.name);
    if (!members.insert(vdi.member).second)
      return fail_at(reader.at(node), "vdi '{}' names member '{}', which another vdi names too", vdi.name, vdi.member);
    out.vdis.push_back(std::move(vdi));
  }
  for (pugi::xml_node node : appliance.children("vm")) {
    XvmVm vm;
    vm.name = node.attribute("name").as_string();
    vm.names = reader.names(node);
    vm.memory_static_min = node.child("memory").attribute("static_min").as_string();
    for (pugi::xml_node vbd_node : node.children("vbd")) {
      XvmVbd vbd{vbd_node.attribute("name").as_string(), vbd_node.attribute("vdi").as_string(),
                 vbd_node.attribute("mode").as_string()};
      if (!out.find_vdi(vbd.vdi))
        return fail_at(reader.at(vbd_node), "vbd '{}' attaches vdi '{}', which is not described", vbd.name, vbd.vdi);
      vm.vbds.push_back(std::move(vbd));
    }
    out.vms.push_back(std::move(vm));
  }
  return out;
}

Result<std::string> write_xvm_xml(const XvmDescription& description) {
  pugi::xml_document doc;
  pugi::xml_node decl = doc.append_child(pugi::node_declaration);
  decl.append_attribute("version") = "1.0";
  pugi::xml_node appliance = doc.append_child("appliance");
  put_names(appliance, description.names, true);
  appliance.append_child("version").text() = description.version.c_str();
  for (const XvmVm& vm : description.vms) {
    pugi::xml_node node = appliance.append_child("vm");
    node.append_attribute("name") = vm.name.c_str();
    put_names(node, vm.names, true);
    node.append_child("memory").append_attribute("static_min") = vm.memory_static_min.c_str();
    for (const XvmVbd& vbd : vm.vbds) {
      pugi::xml_node vbd_node = node.append_child("vbd");
      vbd_node.append_attribute("name") = vbd.name.c_str();
      vbd_node.append_attribute("vdi") = vbd.vdi.c_str();
      vbd_node.append_attribute("mode") = vbd.mode.c_str();
    }
  }
  for (const XvmVdi& vdi : description.vdis) {
    if (!is_safe_member_name(vdi.member))
      return fail(ErrorKind::kFailed, "vdi '{}': '{}' is not a plain member name", vdi.name, vdi.member);
    pugi::xml_node node = appliance.append_child("vdi");
    node.append_attribute("name") = vdi.name.c_str();
    node.append_attribute("src") = (std::string(kFileScheme) + vdi.member).c_str();
    node.append_attribute("variety") = vdi.variety.c_str();
    if (!vdi.compression.empty()) node.append_attribute("compression") = vdi.compression.c_str();
    if (vdi.size) node.append_attribute("size") = std::to_string(*vdi.size).c_str();
    if (!vdi.file.empty()) node.append_attribute("file") = vdi.file.c_str();
    put_names(node, {vdi.label, "", "", ""}, false);
  }
  std::ostringstream out;
  doc.save(out, "  ", pugi::format_default, pugi::encoding_utf8);
  return out.str();
}

}  // namespace kiln
