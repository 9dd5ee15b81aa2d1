#include "formats/domain/xen_config.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>
#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <utility>
#include <vector>

#include "base/vm_shape.h"

namespace kiln {

namespace {

// Keys Xen's xm or xl accept that kiln does not act on. Sorted: looked up by
// binary search.
constexpr auto kUnsupportedKeys = std::to_array<std::string_view>({
    "access_control", "acpi", "acpi_firmware", "acpi_s3", "acpi_s4", "altp2m", "apic",
    "bios", "blkif", "boot", "bootargs", "bootloader", "bootloader_args", "builder",
    "cap", "channel", "claim_mode", "cpu", "cpu_cap", "cpu_weight", "cpuid", "cpuid_check",
    "cpus", "cpus_soft", "description", "device_model", "device_model_args",
    "device_model_override", "device_model_version", "device_tree", "dhcp", "display",
    "driver_domain", "dtdev", "e820_host", "event_channels", "fda", "fdb", "features",
    "firmware", "gateway", "gfx_passthru", "guest_os_type", "hap", "hdtype", "hostname",
    "hpet", "interface", "iomem", "ioports", "ip", "irq", "irqs", "isa", "keymap",
    "localtime", "machine_address_size", "max_event_channels", "max_grant_frames",
    "max_maptrack_frames", "maxmem", "maxvcpus", "monitor", "nestedhvm", "netif",
    "netmask", "nfs_root", "nfs_server", "nographic", "nomigrate", "nx", "on_soft_reset",
    "on_watchdog", "on_xend_start", "on_xend_stop", "opengl", "p9", "pae", "pci",
    "pci_msitranslate", "pci_permissive", "pci_power_mgmt", "pci_seize", "pool",
    "pvcalls", "pvh", "rdm", "rtc_timeoffset", "s3_integrity", "sdl", "seclabel",
    "security", "serial", "shadow_memory", "smbios_firmware", "soundhw", "spice",
    "spicedisable_ticketing", "spicehost", "spicepasswd", "spiceport", "spicetls_port",
    "stdvga", "stubdomain_kernel", "stubdomain_memory", "superpages",
    "suppress_spurious_page_faults", "timer_mode", "tpmif", "tsc_mode", "type", "usb",
    "usbctrl", "usbdev", "usbdevice", "usbport", "usbversion", "uuid", "vcpu_avail",
    "vdispl", "vendor_device", "vfb", "vga", "vhpt", "videoram", "vif_other_config",
    "viridian", "vkb", "vnc", "vncconsole", "vncdisplay", "vnclisten", "vncpasswd",
    "vncunused", "vnuma", "vpt_align", "vscsi", "vsnd", "vtpm", "vuart", "xauthority",
    "xen_platform_pci",
});
static_assert(std::ranges::is_sorted(kUnsupportedKeys));

// Lists nest in xl configs ("vnuma"), never deeply; the bound keeps a hostile
// file from exhausting the stack.
constexpr int kMaxListDepth = 16;

// ---------------------------------------------------------------------------
// Tokens

struct Token {
  enum Kind { kName, kEquals, kString, kInteger, kOpen, kClose, kComma, kSemicolon };
  Kind kind;
  std::string text;    // a name, or a string's decoded value
  int64_t number = 0;  // an integer's value
  int line = 0;
};

// How a token reads in a message: the name or value as written, roughly.
std::string describe(const Token& token) {
  switch (token.kind) {
    case Token::kName: return fmt::format("'{}'", token.text);
    case Token::kEquals: return "'='";
    case Token::kString: return fmt::format("string '{}'", token.text);
    case Token::kInteger: return fmt::format("number {}", token.number);
    case Token::kOpen: return "'['";
    case Token::kClose: return "']'";
    case Token::kComma: return "','";
    case Token::kSemicolon: return "';'";
  }
  return "a token";
}

bool is_name_start(char c) { return std::isalpha(static_cast<unsigned char>(c)) || c == '_'; }
bool is_name_char(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; }

// Splits one line into tokens, decoding strings; a string cannot span lines.
class Tokenizer {
 public:
  Tokenizer(std::string_view line, int line_number, const std::string& file)
      : line_(line), number_(line_number), file_(file) {}

  Result<std::vector<Token>> run() {
    std::vector<Token> tokens;
    while (pos_ < line_.size()) {
      char c = line_[pos_];
      if (c == '#') break;
      if (std::isspace(static_cast<unsigned char>(c))) {
        ++pos_;
      } else if (c == '"' || c == '\'') {
        KILN_ASSIGN(std::string text, read_string(c));
        tokens.push_back({Token::kString, std::move(text), 0, number_});
      } else if (std::isdigit(static_cast<unsigned char>(c)) || c == '-') {
        KILN_ASSIGN(int64_t value, read_integer());
        tokens.push_back({Token::kInteger, "", value, number_});
      } else if (is_name_start(c)) {
        size_t start = pos_;
        while (pos_ < line_.size() && is_name_char(line_[pos_])) ++pos_;
        tokens.push_back({Token::kName, std::string(line_.substr(start, pos_ - start)), 0, number_});
      } else {
        KILN_ASSIGN(Token::Kind kind, punctuation(c));
        tokens.push_back({kind, "", 0, number_});
        ++pos_;
      }
    }
    return tokens;
  }

 private:
  Location here() const { return {file_, number_}; }

  Result<Token::Kind> punctuation(char c) const {
    switch (c) {
      case '=': return Token::kEquals;
      case '[': return Token::kOpen;
      case ']': return Token::kClose;
      case ',': return Token::kComma;
      case ';': return Token::kSemicolon;
      default: break;
    }
    std::string shown = std::isprint(static_cast<unsigned char>(c))
                            ? std::string(1, c)
                            : fmt::format("\\x{:02x}", static_cast<unsigned char>(c));
    return fail_at(here(), "unexpected '{}': a value is a \"string\", an integer or a [list]",
                   shown);
  }

  Result<std::string> read_string(char quote) {
    std::string text;
    ++pos_;
    while (pos_ < line_.size()) {
      char c = line_[pos_++];
      if (c == quote) return text;
      if (c != '\\') {
        text += c;
        continue;
      }
      if (pos_ == line_.size()) break;
      KILN_TRY(read_escape(text));
    }
    return fail_at(here(), "unterminated string: add the closing {} on the same line", quote);
  }

  // After a backslash. Unknown escapes keep their backslash, as in Python.
  Result<> read_escape(std::string& text) {
    char c = line_[pos_++];
    switch (c) {
      case '\\': case '\'': case '"': text += c; return {};
      case 'n': text += '\n'; return {};
      case 't': text += '\t'; return {};
      case 'r': text += '\r'; return {};
      case 'x': break;
      default: text += '\\'; text += c; return {};
    }
    unsigned value = 0;
    auto hex = line_.substr(pos_, 2);
    auto [end, error] = std::from_chars(hex.data(), hex.data() + hex.size(), value, 16);
    if (hex.size() != 2 || error != std::errc() || end != hex.data() + 2)
      return fail_at(here(), "bad \\x escape in a string: expected two hex digits, as in \\x41");
    text += static_cast<char>(value);
    pos_ += 2;
    return {};
  }

  Result<int64_t> read_integer() {
    size_t start = pos_;
    if (line_[pos_] == '-') ++pos_;
    while (pos_ < line_.size() && is_name_char(line_[pos_])) ++pos_;
    std::string_view written = line_.substr(start, pos_ - start);
    std::string_view digits = written;
    bool negative = digits.starts_with('-');
    if (negative) digits.remove_prefix(1);
    int base = 10;
    if (digits.starts_with("0x") || digits.starts_with("0X")) {
      digits.remove_prefix(2);
      base = 16;
    }
    uint64_t magnitude = 0;
    auto [end, error] = std::from_chars(digits.data(), digits.data() + digits.size(), magnitude, base);
    if (digits.empty() || end != digits.data() + digits.size() || error == std::errc::invalid_argument)
      return fail_at(here(), "bad number '{}': expected decimal digits or 0x and hex digits", written);
    if (error == std::errc::result_out_of_range ||
        magnitude > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
      return fail_at(here(), "number '{}' is too large", written);
    auto value = static_cast<int64_t>(magnitude);
    return negative ? -value : value;
  }

  std::string_view line_;
  int number_;
  const std::string& file_;
  size_t pos_ = 0;
};

// ---------------------------------------------------------------------------
// Values

struct Value {
  enum Kind { kString, kInteger, kList };
  Kind kind = kString;
  std::string text;
  int64_t number = 0;
  std::vector<Value> items;
  int line = 0;
};

std::string_view trim(std::string_view text) {
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.front()))) text.remove_prefix(1);
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) text.remove_suffix(1);
  return text;
}

// Splits at commas, trimming each field.
std::vector<std::string_view> split_fields(std::string_view text) {
  std::vector<std::string_view> fields;
  while (true) {
    size_t comma = text.find(',');
    fields.push_back(trim(text.substr(0, comma)));
    if (comma == std::string_view::npos) return fields;
    text.remove_prefix(comma + 1);
  }
}

// ---------------------------------------------------------------------------
// Disks

constexpr std::string_view kDiskForm = "expected BACKEND:PATH,FRONTEND,MODE";

struct Backend {
  std::string_view prefix;
  DiskBackend kind;
};
constexpr std::array kBackends = {Backend{"file:", DiskBackend::kFile},
                                  Backend{"tap:aio:", DiskBackend::kTapAio},
                                  Backend{"phy:", DiskBackend::kPhy}};

// xm took "phy:vg0/feisty" to mean /dev/vg0/feisty.
std::string device_path(DiskBackend backend, std::string_view path) {
  if (backend == DiskBackend::kPhy && !path.starts_with('/')) return "/dev/" + std::string(path);
  return std::string(path);
}

Result<std::string> parse_frontend(std::string_view written, std::string_view spec,
                                   const Location& where) {
  // "ioemu:hda" in HVM-era configs asks for an emulated disk: still hda.
  std::string_view name = written.starts_with("ioemu:") ? written.substr(6) : written;
  if (!is_xen_frontend(name))
    return fail_at(where, "bad guest device '{}' in disk spec '{}': expected sdX, hdX or xvdX "
                   "with an optional partition number, e.g. xvda1", written, spec);
  return std::string(name);
}

Result<DomainDisk> parse_xm_disk(std::string_view spec, const Backend& backend,
                                 const Location& where) {
  auto fields = split_fields(spec);
  if (fields.size() != 3)
    return fail_at(where, "bad disk spec '{}': {} (the guest device and the mode are both "
                   "required, e.g. 'phy:vg0/feisty,xvda1,w')", spec, kDiskForm);
  DomainDisk disk;
  disk.backend = backend.kind;
  disk.where = where;
  std::string_view path = trim(fields[0].substr(backend.prefix.size()));
  if (path.empty()) return fail_at(where, "bad disk spec '{}': the path after {} is empty", spec, backend.prefix);
  disk.path = device_path(backend.kind, path);
  KILN_ASSIGN(disk.frontend, parse_frontend(fields[1], spec, where));
  if (fields[2] != "r" && fields[2] != "w" && fields[2] != "rw")
    return fail_at(where, "bad mode '{}' in disk spec '{}': expected r, w or rw", fields[2], spec);
  disk.read_only = fields[2] == "r";
  return disk;
}

// xl's "vdev=xvda, access=rw, target=PATH": target comes last and takes the
// rest of the spec, commas included.
Result<DomainDisk> parse_xl_disk(std::string_view spec, const Location& where) {
  std::map<std::string, std::string, std::less<>> params;
  std::string_view rest = spec;
  for (bool more = true; more;) {
    std::string_view field;
    if (trim(rest).starts_with("target=")) {
      field = trim(rest);
      more = false;
    } else {
      size_t comma = rest.find(',');
      field = trim(rest.substr(0, comma));
      more = comma != std::string_view::npos;
      if (more) rest.remove_prefix(comma + 1);
    }
    if (field.empty()) continue;
    size_t equals = field.find('=');
    if (equals == std::string_view::npos)
      return fail_at(where, "bad disk spec '{}': {} (or only xl KEY=VALUE parameters, "
                     "'{}' is neither)", spec, kDiskForm, field);
    std::string_view key = trim(field.substr(0, equals));
    std::string_view value = trim(field.substr(equals + 1));
    if (key != "target" && key != "vdev" && key != "access" && key != "format" && key != "backendtype")
      return fail_at(where, "disk parameter '{}' in '{}' is not supported: kiln reads target, "
                     "vdev, access, format and backendtype", key, spec);
    if (!params.emplace(key, value).second)
      return fail_at(where, "bad disk spec '{}': {}= is given twice", spec, key);
  }
  if (!params.contains("target") || !params.contains("vdev") || params["target"].empty())
    return fail_at(where, "bad disk spec '{}': {}, or xl parameters with vdev= and target=",
                   spec, kDiskForm);

  DomainDisk disk;
  disk.where = where;
  if (auto found = params.find("backendtype"); found != params.end()) {
    if (found->second == "phy") disk.backend = DiskBackend::kPhy;
    else if (found->second == "tap") disk.backend = DiskBackend::kTapAio;
    else if (found->second != "qdisk")
      return fail_at(where, "bad backendtype '{}' in disk spec '{}': expected phy, tap or qdisk",
                     found->second, spec);
  }
  if (auto found = params.find("format"); found != params.end()) {
    if (found->second == "qcow2") disk.format = DiskFormat::kQcow2;
    else if (found->second != "raw")
      return fail_at(where, "bad format '{}' in disk spec '{}': expected raw or qcow2",
                     found->second, spec);
  }
  if (auto found = params.find("access"); found != params.end()) {
    const std::string& access = found->second;
    if (access != "r" && access != "ro" && access != "w" && access != "rw")
      return fail_at(where, "bad access '{}' in disk spec '{}': expected r, ro, w or rw", access, spec);
    disk.read_only = access == "r" || access == "ro";
  }
  disk.path = device_path(disk.backend, params["target"]);
  KILN_ASSIGN(disk.frontend, parse_frontend(params["vdev"], spec, where));
  return disk;
}

Result<DomainDisk> parse_disk(std::string_view spec, const Location& where) {
  std::string_view trimmed = trim(spec);
  for (const Backend& backend : kBackends) {
    if (trimmed.starts_with(backend.prefix)) return parse_xm_disk(trimmed, backend, where);
  }
  if (trimmed.find('=') != std::string_view::npos) return parse_xl_disk(trimmed, where);
  return fail_at(where, "bad disk spec '{}': {} with BACKEND file:, tap:aio: or phy:", spec, kDiskForm);
}

// ---------------------------------------------------------------------------
// Network interfaces

Result<DomainVif> parse_vif(std::string_view spec, const Location& where) {
  DomainVif vif;
  vif.where = where;
  std::vector<std::string_view> seen;
  for (std::string_view field : split_fields(spec)) {
    if (field.empty()) continue;
    size_t equals = field.find('=');
    std::string_view key = trim(field.substr(0, equals));
    if (equals == std::string_view::npos || key.empty())
      return fail_at(where, "bad vif spec '{}': '{}' is not KEY=VALUE; write e.g. "
                     "'mac=00:16:3e:00:00:10, bridge=xenbr0'", spec, field);
    if (std::ranges::find(seen, key) != seen.end())
      return fail_at(where, "bad vif spec '{}': {}= is given twice", spec, key);
    seen.push_back(key);
    std::string value(trim(field.substr(equals + 1)));
    if (key == "mac") {
      if (!is_mac_address(value))
        return fail_at(where, "bad MAC address '{}' in vif spec '{}': expected six hex octets "
                       "like 00:16:3e:12:34:56", value, spec);
      vif.mac = std::move(value);
    } else if (key == "bridge") {
      vif.bridge = std::move(value);
    } else {
      vif.other_keys.emplace_back(key, std::move(value));
    }
  }
  return vif;
}

// ---------------------------------------------------------------------------
// Reading a value as what its key needs

Result<std::string> string_value(std::string_view key, const Value& value, const Location& where) {
  if (value.kind != Value::kString)
    return fail_at(where, "{} must be a string, e.g. {} = \"...\"", key, key);
  return value.text;
}

// memory and vcpus: xm ran int() over them, so '4096' counts too.
std::optional<int64_t> integer_of(const Value& value) {
  if (value.kind == Value::kInteger) return value.number;
  if (value.kind != Value::kString) return std::nullopt;
  int64_t number = 0;
  std::string_view text = trim(value.text);
  auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), number);
  if (text.empty() || error != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return number;
}

Result<> check_string_list(std::string_view key, const Value& value, const Location& where,
                           std::string_view example) {
  bool strings = value.kind == Value::kList &&
                 std::ranges::all_of(value.items, [](const Value& item) { return item.kind == Value::kString; });
  if (!strings) return fail_at(where, "{} must be a list of strings, e.g. {} = ['{}']", key, key, example);
  return {};
}

// Everything the lines set, before finish() puts it together.
struct Settings {
  DomainSpec spec;
  std::optional<std::string> cmdline;
};

using KeyReader = Result<> (*)(Settings&, std::string_view key, const Value&, const Location&);

template <std::string DomainSpec::*field>
Result<> read_string(Settings& settings, std::string_view key, const Value& value,
                     const Location& where) {
  KILN_ASSIGN(settings.spec.*field, string_value(key, value, where));
  return {};
}

Result<> read_cmdline(Settings& settings, std::string_view key, const Value& value,
                      const Location& where) {
  KILN_ASSIGN(settings.cmdline, string_value(key, value, where));
  return {};
}

Result<> read_memory(Settings& settings, std::string_view, const Value& value, const Location& where) {
  auto number = integer_of(value);
  if (!number || *number <= 0)
    return fail_at(where, "memory must be a positive integer (MB), e.g. memory = 512");
  if (std::string problem = vm_memory_mib_problem(*number); !problem.empty())
    return fail_at(where, "memory = {}: {}", *number, problem);
  settings.spec.memory_mib = static_cast<uint64_t>(*number);
  return {};
}

Result<> read_vcpus(Settings& settings, std::string_view, const Value& value, const Location& where) {
  auto number = integer_of(value);
  if (!number) return fail_at(where, "vcpus must be an integer, e.g. vcpus = 2");
  if (std::string problem = vm_vcpus_problem(*number); !problem.empty())
    return fail_at(where, "vcpus = {}: {}", *number, problem);
  settings.spec.vcpus = static_cast<int>(*number);
  return {};
}

Result<> read_disks(Settings& settings, std::string_view key, const Value& value,
                    const Location& where) {
  KILN_TRY(check_string_list(key, value, where, "file:/srv/img/root.img,xvda1,w"));
  for (const Value& item : value.items) {
    KILN_ASSIGN(DomainDisk disk, parse_disk(item.text, {where.file, item.line}));
    settings.spec.disks.push_back(std::move(disk));
  }
  return {};
}

Result<> read_vifs(Settings& settings, std::string_view key, const Value& value,
                   const Location& where) {
  KILN_TRY(check_string_list(key, value, where, "mac=00:16:3e:00:00:10, bridge=xenbr0"));
  for (const Value& item : value.items) {
    KILN_ASSIGN(DomainVif vif, parse_vif(item.text, {where.file, item.line}));
    settings.spec.vifs.push_back(std::move(vif));
  }
  return {};
}

// Xen allows the coredump-* actions on a crash only.
template <DomainAction DomainSpec::*field>
Result<> read_action(Settings& settings, std::string_view key, const Value& value,
                     const Location& where) {
  KILN_ASSIGN(std::string text, string_value(key, value, where));
  bool crash = field == &DomainSpec::on_crash;
  for (auto action : {DomainAction::kDestroy, DomainAction::kRestart, DomainAction::kPreserve,
                      DomainAction::kRenameRestart, DomainAction::kCoredumpDestroy,
                      DomainAction::kCoredumpRestart}) {
    bool coredump = action == DomainAction::kCoredumpDestroy || action == DomainAction::kCoredumpRestart;
    if (text == action_name(action) && (crash || !coredump)) {
      settings.spec.*field = action;
      return {};
    }
  }
  return fail_at(where, "bad {} '{}': expected destroy, restart, preserve{}", key, text,
                 crash ? ", rename-restart, coredump-destroy or coredump-restart" : " or rename-restart");
}

struct SupportedKey {
  std::string_view key;
  KeyReader read;
};

constexpr std::array kSupportedKeys = {
    SupportedKey{"name", read_string<&DomainSpec::name>},
    SupportedKey{"memory", read_memory},
    SupportedKey{"vcpus", read_vcpus},
    SupportedKey{"kernel", read_string<&DomainSpec::kernel>},
    SupportedKey{"ramdisk", read_string<&DomainSpec::ramdisk>},
    SupportedKey{"root", read_string<&DomainSpec::root>},
    SupportedKey{"extra", read_string<&DomainSpec::extra>},
    SupportedKey{"cmdline", read_cmdline},
    SupportedKey{"disk", read_disks},
    SupportedKey{"vif", read_vifs},
    SupportedKey{"on_poweroff", read_action<&DomainSpec::on_poweroff>},
    SupportedKey{"on_reboot", read_action<&DomainSpec::on_reboot>},
    SupportedKey{"on_crash", read_action<&DomainSpec::on_crash>},
};

std::string supported_key_list() {
  std::string list;
  for (const SupportedKey& supported : kSupportedKeys) {
    if (!list.empty()) list += ", ";
    list += supported.key;
  }
  return list;
}

// Reads one value at `index` of a statement whose brackets balance.
Result<Value> parse_value(const std::vector<Token>& tokens, size_t& index, std::string_view key,
                          const std::string& file) {
  const Token& token = tokens[index++];
  switch (token.kind) {
    case Token::kString: return Value{Value::kString, token.text, 0, {}, token.line};
    case Token::kInteger: return Value{Value::kInteger, "", token.number, {}, token.line};
    case Token::kOpen: break;
    default:
      return fail_at({file, token.line}, "expected a value for '{}', found {}", key, describe(token));
  }
  Value list{Value::kList, "", 0, {}, token.line};
  while (tokens[index].kind != Token::kClose) {
    KILN_ASSIGN(Value item, parse_value(tokens, index, key, file));
    list.items.push_back(std::move(item));
    const Token& next = tokens[index];
    if (next.kind == Token::kComma) {
      ++index;
    } else if (next.kind != Token::kClose) {
      return fail_at({file, next.line}, "expected ',' or ']' in the list of '{}', found {}", key,
                     describe(next));
    }
  }
  ++index;
  return list;
}

}  // namespace

// ---------------------------------------------------------------------------
// The parser

struct XenConfigParser::State {
  std::string file;
  Settings settings;
  std::vector<Token> pending;  // the statement read so far
  int depth = 0;               // lists open in the pending statement
  int list_line = 0;           // where the outermost open list began
  int last_line = 0;

  Location at(int line) const { return {file, line}; }
  Result<> take(Token token);
  Result<> end_statement();
  Result<> apply(const std::string& key, const Value& value, const Location& where);
};

Result<> XenConfigParser::State::take(Token token) {
  if (depth > 0 && (token.kind == Token::kName || token.kind == Token::kEquals ||
                    token.kind == Token::kSemicolon))
    return fail_at(at(token.line), "unterminated list (opened at line {}): expected a value, "
                   "',' or ']' before {}", list_line, describe(token));
  switch (token.kind) {
    case Token::kSemicolon: return end_statement();
    case Token::kOpen:
      if (depth == 0) list_line = token.line;
      if (++depth > kMaxListDepth)
        return fail_at(at(token.line), "lists nested more than {} deep", kMaxListDepth);
      break;
    case Token::kClose:
      if (depth == 0) return fail_at(at(token.line), "unexpected ']': no list is open");
      --depth;
      break;
    default: break;
  }
  pending.push_back(std::move(token));
  return {};
}

Result<> XenConfigParser::State::end_statement() {
  std::vector<Token> tokens = std::exchange(pending, {});
  if (tokens.empty()) return {};
  const Token& key = tokens[0];
  if (key.kind != Token::kName)
    return fail_at(at(key.line), "expected KEY = VALUE, found {}", describe(key));
  if (tokens.size() < 2 || tokens[1].kind != Token::kEquals)
    return fail_at(at(key.line), "expected '=' after key '{}'", key.text);
  if (tokens.size() < 3) return fail_at(at(key.line), "missing value after '{} ='", key.text);
  size_t index = 2;
  KILN_ASSIGN(Value value, parse_value(tokens, index, key.text, file));
  if (index < tokens.size())
    return fail_at(at(tokens[index].line), "unexpected {} after the value of '{}': write one "
                   "KEY = VALUE per line, or separate them with ';'", describe(tokens[index]), key.text);
  return apply(key.text, value, at(key.line));
}

Result<> XenConfigParser::State::apply(const std::string& key, const Value& value,
                                       const Location& where) {
  DomainSource& source = settings.spec.source;
  if (std::ranges::binary_search(kUnsupportedKeys, key)) {
    // Python let a later line win; kiln ignores the key either way.
    if (source.keys.emplace(key, where).second) source.unsupported.push_back({key, where});
    return {};
  }
  auto supported = std::ranges::find(kSupportedKeys, key, &SupportedKey::key);
  if (supported == kSupportedKeys.end())
    return fail_at(where, "unknown key '{}': not a Xen domain config key (kiln reads {})", key,
                   supported_key_list());
  auto [first, inserted] = source.keys.emplace(key, where);
  if (!inserted)
    return fail_at(where, "'{}' is set twice (first at line {}); keep one", key, first->second.line);
  return supported->read(settings, key, value, where);
}

XenConfigParser::XenConfigParser(std::string_view file_name) : state_(std::make_unique<State>()) {
  state_->file = std::string(file_name);
  state_->settings.spec.source.file = state_->file;
}

XenConfigParser::XenConfigParser(XenConfigParser&&) noexcept = default;
XenConfigParser& XenConfigParser::operator=(XenConfigParser&&) noexcept = default;
XenConfigParser::~XenConfigParser() = default;

Result<> XenConfigParser::feed_line(std::string_view line, int line_number) {
  State& state = *state_;
  state.last_line = line_number;
  KILN_ASSIGN(std::vector<Token> tokens, Tokenizer(line, line_number, state.file).run());
  for (Token& token : tokens) KILN_TRY(state.take(std::move(token)));
  if (state.depth == 0) return state.end_statement();
  return {};
}

Result<DomainSpec> XenConfigParser::finish() {
  State& state = *state_;
  if (state.depth > 0)
    return fail_at(state.at(state.last_line), "unterminated list (opened at line {}): the "
                   "file ends before its closing ']'", state.list_line);
  DomainSpec& spec = state.settings.spec;
  if (state.settings.cmdline) {
    if (spec.source.keys.contains("root") || spec.source.keys.contains("extra"))
      return fail_at(spec.source.of("cmdline"), "cmdline replaces root and extra: set either "
                     "cmdline, or root and extra");
    spec.extra = std::move(*state.settings.cmdline);
  }
  KILN_TRY(check_domain(spec));
  return std::move(spec);
}

// ---------------------------------------------------------------------------
// Writing

namespace {

// A string literal that the tokenizer reads back as `text`.
std::string quoted(std::string_view text, char quote) {
  std::string out(1, quote);
  for (char c : text) {
    auto byte = static_cast<unsigned char>(c);
    if (c == '\\' || c == quote) {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\t') {
      out += "\\t";
    } else if (byte < 0x20 || byte == 0x7f) {
      out += fmt::format("\\x{:02x}", byte);
    } else {
      out += c;
    }
  }
  out += quote;
  return out;
}

std::string_view backend_prefix(DiskBackend backend) {
  switch (backend) {
    case DiskBackend::kFile: return "file:";
    case DiskBackend::kTapAio: return "tap:aio:";
    case DiskBackend::kPhy: return "phy:";
  }
  return "file:";
}

// The xm form where it can say everything, else xl's keyword form.
std::string disk_spec(const DomainDisk& disk) {
  if (disk.format == DiskFormat::kRaw && disk.path.find(',') == std::string::npos)
    return fmt::format("{}{},{},{}", backend_prefix(disk.backend), disk.path, disk.frontend,
                       disk.read_only ? "r" : "w");
  std::string spec = fmt::format("format={}, vdev={}, access={}",
                                 disk.format == DiskFormat::kQcow2 ? "qcow2" : "raw", disk.frontend,
                                 disk.read_only ? "ro" : "rw");
  if (disk.backend == DiskBackend::kPhy) spec += ", backendtype=phy";
  if (disk.backend == DiskBackend::kTapAio) spec += ", backendtype=tap";
  return spec + ", target=" + disk.path;
}

std::string vif_spec(const DomainVif& vif) {
  std::vector<std::string> fields;
  if (!vif.mac.empty()) fields.push_back("mac=" + vif.mac);
  if (!vif.bridge.empty()) fields.push_back("bridge=" + vif.bridge);
  for (const auto& [key, value] : vif.other_keys) fields.push_back(key + "=" + value);
  std::string spec;
  for (const std::string& field : fields) spec += (spec.empty() ? "" : ", ") + field;
  return spec;
}

// One item on the key's line; several one per line, as in the Xen examples.
std::string list_value(const std::vector<std::string>& items) {
  if (items.size() == 1) return "[" + quoted(items[0], '\'') + "]";
  std::string out = "[\n";
  for (const std::string& item : items) out += "    " + quoted(item, '\'') + ",\n";
  return out + "]";
}

}  // namespace

Result<std::string> write_xen_config(const DomainSpec& spec) {
  KILN_TRY(check_domain(spec));
  std::string out = "# Xen domain config (xm/xl syntax), written by kiln\n";
  auto add = [&out](std::string_view key, std::string_view value) {
    out += fmt::format("{} = {}\n", key, value);
  };
  auto add_string = [&add](std::string_view key, const std::string& value) {
    if (!value.empty()) add(key, quoted(value, '"'));
  };
  add_string("name", spec.name);
  add_string("kernel", spec.kernel);
  add_string("ramdisk", spec.ramdisk);
  if (spec.memory_mib > 0) add("memory", std::to_string(spec.memory_mib));
  add("vcpus", std::to_string(spec.vcpus));
  add_string("root", spec.root);
  add_string("extra", spec.extra);
  std::vector<std::string> disks;
  for (const DomainDisk& disk : spec.disks) disks.push_back(disk_spec(disk));
  if (!disks.empty()) add("disk", list_value(disks));
  std::vector<std::string> vifs;
  for (const DomainVif& vif : spec.vifs) vifs.push_back(vif_spec(vif));
  if (!vifs.empty()) add("vif", list_value(vifs));
  add("on_poweroff", quoted(action_name(spec.on_poweroff), '"'));
  add("on_reboot", quoted(action_name(spec.on_reboot), '"'));
  add("on_crash", quoted(action_name(spec.on_crash), '"'));
  return out;
}

Result<DomainSpec> parse_xen_config(std::string_view text, std::string_view file_name) {
  XenConfigParser parser(file_name);
  int line_number = 0;
  while (!text.empty()) {
    size_t newline = text.find('\n');
    KILN_TRY(parser.feed_line(text.substr(0, newline), ++line_number));
    if (newline == std::string_view::npos) break;
    text.remove_prefix(newline + 1);
  }
  return parser.finish();
}

}  // namespace kiln
