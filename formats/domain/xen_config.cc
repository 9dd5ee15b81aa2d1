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
#include "formats/domain/comma_fields.h"
#include "formats/domain/xen_disk_spec.h"

namespace kiln {

namespace {

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
  int column = 0;  // 1-based, where the token starts
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
        int column = here().column;
        KILN_ASSIGN(std::string text, read_string(c));
        tokens.push_back({Token::kString, std::move(text), 0, number_, column});
      } else if (std::isdigit(static_cast<unsigned char>(c)) || c == '-') {
        int column = here().column;
        KILN_ASSIGN(int64_t value, read_integer());
        tokens.push_back({Token::kInteger, "", value, number_, column});
      } else if (is_name_start(c)) {
        size_t start = pos_;
        while (pos_ < line_.size() && is_name_char(line_[pos_])) ++pos_;
        tokens.push_back({Token::kName, std::string(line_.substr(start, pos_ - start)), 0, number_, column_of(start)});
      } else {
        KILN_ASSIGN(Token::Kind kind, punctuation(c));
        tokens.push_back({kind, "", 0, number_, here().column});
        ++pos_;
      }
    }
    return tokens;
  }

 private:
  int column_of(size_t pos) const { return static_cast<int>(pos) + 1; }
  Location here() const { return {file_, number_, column_of(pos_)}; }
  Location at(size_t pos) const { return {file_, number_, column_of(pos)}; }

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
    const size_t opened = pos_;
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
    return fail_at(at(opened), "unterminated string: add the closing {} on the same line", quote);
  }

  // After a backslash. Unknown escapes keep their backslash, as in Python.
  Result<> read_escape(std::string& text) {
    const size_t backslash = pos_ - 1;
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
      return fail_at(at(backslash), "bad \\x escape in a string: expected two hex digits, as in \\x41");
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
      return fail_at(at(start), "bad number '{}': expected decimal digits or 0x and hex digits", written);
    if (error == std::errc::result_out_of_range ||
        magnitude > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
      return fail_at(at(start), "number '{}' is too large", written);
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
  int column = 0;
};

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
  std::optional<Location> type_set_at;  // type, builder and pvh all say the type

  // One warning for `key`, with the table's reason.
  void note(std::string_view key);
  std::string_view doc_of(std::string_view key) const;

  Result<> set_type(DomainType type, std::string_view key, const Location& where) {
    if (type_set_at && spec.type != type)
      return fail_at(where, "{} says the domain is {}, but line {} said {}", key, domain_type_name(type),
                     type_set_at->line, domain_type_name(spec.type));
    spec.type = type;
    type_set_at = where;
    return {};
  }
};

// Python's truth: 0, "", "0" and [] ask for nothing.
bool truthy(const Value& value) {
  switch (value.kind) {
    case Value::kInteger: return value.number != 0;
    case Value::kString: return !value.text.empty() && value.text != "0";
    case Value::kList: return !value.items.empty();
  }
  return false;
}

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
    KILN_ASSIGN(DomainDisk disk, parse_xen_disk_spec(item.text, {where.file, item.line, item.column}));
    settings.spec.disks.push_back(std::move(disk));
  }
  return {};
}

Result<> read_vifs(Settings& settings, std::string_view key, const Value& value,
                   const Location& where) {
  KILN_TRY(check_string_list(key, value, where, "mac=00:16:3e:00:00:10, bridge=xenbr0"));
  for (const Value& item : value.items) {
    KILN_ASSIGN(DomainVif vif, parse_vif(item.text, {where.file, item.line, item.column}));
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

Result<> read_type(Settings& settings, std::string_view key, const Value& value, const Location& where) {
  KILN_ASSIGN(std::string text, string_value(key, value, where));
  for (DomainType type : {DomainType::kPv, DomainType::kPvh, DomainType::kHvm}) {
    if (text == domain_type_name(type)) return settings.set_type(type, key, where);
  }
  return fail_at(where, "bad type '{}': expected pv, pvh or hvm", text);
}

// xm's name for the type: "linux" (or "generic") built a PV domain.
Result<> read_builder(Settings& settings, std::string_view key, const Value& value, const Location& where) {
  KILN_ASSIGN(std::string text, string_value(key, value, where));
  if (text == "linux" || text == "generic") return settings.set_type(DomainType::kPv, key, where);
  if (text == "hvm") return settings.set_type(DomainType::kHvm, key, where);
  return fail_at(where, "bad builder '{}': expected linux or hvm (or type = \"pv\", \"pvh\", \"hvm\")", text);
}

// xl's older "pvh = 1".
Result<> read_pvh(Settings& settings, std::string_view key, const Value& value, const Location& where) {
  if (!truthy(value)) return {};
  return settings.set_type(DomainType::kPvh, key, where);
}

// A list of words, or (as older configs wrote it) one string of them.
Result<> read_bootloader_args(Settings& settings, std::string_view key, const Value& value, const Location& where) {
  std::vector<std::string>& args = settings.spec.bootloader_args;
  if (value.kind == Value::kString) {
    for (std::string_view rest = value.text; !trim(rest).empty();) {
      rest = trim(rest);
      size_t space = rest.find_first_of(" \t");
      args.emplace_back(rest.substr(0, space));
      rest = space == std::string_view::npos ? std::string_view{} : rest.substr(space);
    }
    return {};
  }
  KILN_TRY(check_string_list(key, value, where, "--entry=1"));
  for (const Value& item : value.items) args.push_back(item.text);
  return {};
}

Result<> read_boot(Settings& settings, std::string_view key, const Value& value, const Location& where) {
  KILN_ASSIGN(std::string order, string_value(key, value, where));
  if (order.empty() || order.find_first_not_of("acdn") != std::string::npos)
    return fail_at(where, "bad boot '{}': expected devices in order, c (disk), d (cdrom), n (network), "
                   "e.g. boot = \"c\"", order);
  settings.spec.boot = order;
  return {};
}

// Keys whose every value asks for something kiln's guests do not have.
// Only a value that asks for it gets a word: vnc = 0 asks for nothing.
Result<> note_when_set(Settings& settings, std::string_view key, const Value& value, const Location&) {
  if (truthy(value)) settings.note(key);
  return {};
}

// "pty" is the serial console kiln gives every guest.
Result<> read_serial(Settings& settings, std::string_view key, const Value& value, const Location&) {
  bool pty = (value.kind == Value::kString && value.text == "pty") ||
             (value.kind == Value::kList && value.items.size() == 1 && value.items[0].text == "pty");
  if (!pty && truthy(value)) settings.note(key);
  return {};
}

// A device of the host given to the guest: a guest that expects it would
// boot into a machine it was not written for.
Result<> refuse_when_set(Settings& settings, std::string_view key, const Value& value, const Location& where) {
  if (truthy(value)) return fail_at(where, "{} = ...: {}", key, settings.doc_of(key));
  return {};
}

Result<> accept(Settings&, std::string_view, const Value&, const Location&) { return {}; }

constexpr std::string_view kNoDisplay =
    "kiln's guests have no display; their console is the first serial line (kiln console NAME)";
constexpr std::string_view kHostPlacement = "where and how the host schedules the guest is left to the host kernel";
constexpr std::string_view kXenMachine =
    "a detail of the machine Xen emulates; kiln's backends (qemu, UML) decide it for themselves";
constexpr std::string_view kPassthrough =
    "passes a host device through to the guest; kiln gives guests virtual devices only";
constexpr std::string_view kXmIpConfig =
    "xm's kernel-level IP settings; kiln's networks give the guest its address (DHCP on user networking)";
constexpr std::string_view kXenInternals = "a Xen hypervisor or toolstack setting with no meaning outside Xen";

using Treatment = XenKeyTreatment;

struct XenKey {
  std::string_view key;
  Treatment treatment;
  std::string_view doc;  // honoured: what kiln does; otherwise why not
  KeyReader read = nullptr;
};

constexpr auto kXenKeys = std::to_array<XenKey>({
    {"name", Treatment::kHonoured, "the instance's name (kiln boot --name overrides it)",
     read_string<&DomainSpec::name>},
    {"type", Treatment::kHonoured, "pv and pvh boot the kernel directly; hvm boots the first disk through "
                                   "UEFI firmware (qemu)", read_type},
    {"builder", Treatment::kHonoured, "xm's type: linux is pv, hvm is hvm", read_builder},
    {"pvh", Treatment::kHonoured, "pvh = 1 is type = \"pvh\"", read_pvh},
    {"memory", Treatment::kHonoured, "memory in MiB (default 512)", read_memory},
    {"vcpus", Treatment::kHonoured, "virtual CPUs (UML runs one)", read_vcpus},
    {"kernel", Treatment::kHonoured, "the kernel booted directly (qemu; UML boots its own kernel)",
     read_string<&DomainSpec::kernel>},
    {"ramdisk", Treatment::kHonoured, "the kernel's initrd (qemu)", read_string<&DomainSpec::ramdisk>},
    {"root", Treatment::kHonoured, "root= for the kernel, its Xen device translated to the backend's "
                                   "(xvda2 is vda2 on qemu, ubda2 on UML)", read_string<&DomainSpec::root>},
    {"extra", Treatment::kHonoured, "the rest of the kernel command line, kept as written (a root= in it "
                                    "wins, translated as root is; console=hvc0 is the serial console)",
     read_string<&DomainSpec::extra>},
    {"cmdline", Treatment::kHonoured, "xl's whole kernel command line, instead of root and extra",
     read_cmdline},
    {"bootloader", Treatment::kHonoured, "pygrub (or any boot loader program): kiln finds the kernel, initrd "
                                         "and command line in the first disk as pygrub does, without mounting it",
     read_string<&DomainSpec::bootloader>},
    {"bootloader_args", Treatment::kHonoured, "pygrub's --entry, --kernel, --ramdisk and --args",
     read_bootloader_args},
    {"disk", Treatment::kHonoured, "the disks, in every form xl-disk-configuration(5) and xm read",
     read_disks},
    {"vif", Treatment::kHonoured, "every interface in order: mac=, bridge= (a kiln network, else a host bridge), ip= "
     "(a static address) and vifname=; other keys warn",
     read_vifs},
    {"on_poweroff", Treatment::kHonoured, "destroy, restart or preserve", read_action<&DomainSpec::on_poweroff>},
    {"on_reboot", Treatment::kHonoured, "destroy, restart or preserve", read_action<&DomainSpec::on_reboot>},
    {"on_crash", Treatment::kHonoured, "destroy, restart or preserve; a crashed guest's console log is kept "
                                       "whatever the policy", read_action<&DomainSpec::on_crash>},
    {"boot", Treatment::kHonoured, "hvm: the boot order; kiln boots the first disk (c) and says so when "
                                   "another device comes first", read_boot},
    {"serial", Treatment::kHonoured, "\"pty\" is the serial console every kiln guest has (kiln console); "
                                     "other targets are noted", read_serial},
    {"nographic", Treatment::kHonoured, "no display, as every kiln guest", accept},
    {"uuid", Treatment::kWarned, "kiln gives each instance its own machine id"},
    {"maxmem", Treatment::kWarned, "no memory ballooning: the guest has `memory`"},
    {"maxvcpus", Treatment::kWarned, "no CPU hot-plug: the guest has `vcpus`"},
    {"vcpu_avail", Treatment::kWarned, "no CPU hot-plug: the guest has `vcpus`"},
    {"cpus", Treatment::kWarned, kHostPlacement},
    {"cpus_soft", Treatment::kWarned, kHostPlacement},
    {"cpu", Treatment::kWarned, kHostPlacement},
    {"cpu_weight", Treatment::kWarned, kHostPlacement},
    {"cpu_cap", Treatment::kWarned, kHostPlacement},
    {"cap", Treatment::kWarned, kHostPlacement},
    {"pool", Treatment::kWarned, kHostPlacement},
    {"vnuma", Treatment::kWarned, kHostPlacement},
    {"claim_mode", Treatment::kWarned, kXenInternals},
    {"vnc", Treatment::kWarned, kNoDisplay, note_when_set},
    {"vncconsole", Treatment::kWarned, kNoDisplay, note_when_set},
    {"vncdisplay", Treatment::kWarned, kNoDisplay, note_when_set},
    {"vnclisten", Treatment::kWarned, kNoDisplay, note_when_set},
    {"vncpasswd", Treatment::kWarned, kNoDisplay, note_when_set},
    {"vncunused", Treatment::kWarned, kNoDisplay, note_when_set},
    {"sdl", Treatment::kWarned, kNoDisplay, note_when_set},
    {"opengl", Treatment::kWarned, kNoDisplay, note_when_set},
    {"vfb", Treatment::kWarned, kNoDisplay, note_when_set},
    {"vkb", Treatment::kWarned, kNoDisplay, note_when_set},
    {"vga", Treatment::kWarned, kNoDisplay, note_when_set},
    {"stdvga", Treatment::kWarned, kNoDisplay, note_when_set},
    {"videoram", Treatment::kWarned, kNoDisplay, note_when_set},
    {"display", Treatment::kWarned, kNoDisplay, note_when_set},
    {"xauthority", Treatment::kWarned, kNoDisplay, note_when_set},
    {"keymap", Treatment::kWarned, kNoDisplay, note_when_set},
    {"spice", Treatment::kWarned, kNoDisplay, note_when_set},
    {"spicehost", Treatment::kWarned, kNoDisplay, note_when_set},
    {"spiceport", Treatment::kWarned, kNoDisplay, note_when_set},
    {"spicetls_port", Treatment::kWarned, kNoDisplay, note_when_set},
    {"spicedisable_ticketing", Treatment::kWarned, kNoDisplay, note_when_set},
    {"spicepasswd", Treatment::kWarned, kNoDisplay, note_when_set},
    {"vdispl", Treatment::kWarned, kNoDisplay, note_when_set},
    {"gfx_passthru", Treatment::kWarned, kNoDisplay, note_when_set},
    {"soundhw", Treatment::kWarned, "kiln's guests have no sound device", note_when_set},
    {"vsnd", Treatment::kWarned, "kiln's guests have no sound device", note_when_set},
    {"usb", Treatment::kWarned, "kiln's guests have no USB controller", note_when_set},
    {"usbdevice", Treatment::kWarned, "kiln's guests have no USB controller", note_when_set},
    {"usbctrl", Treatment::kWarned, "kiln's guests have no USB controller", note_when_set},
    {"usbdev", Treatment::kRefused, kPassthrough, refuse_when_set},
    {"usbversion", Treatment::kWarned, "kiln's guests have no USB controller", note_when_set},
    {"usbport", Treatment::kWarned, "kiln's guests have no USB controller", note_when_set},
    {"pci", Treatment::kRefused, kPassthrough, refuse_when_set},
    {"pci_msitranslate", Treatment::kWarned, kPassthrough},
    {"pci_permissive", Treatment::kWarned, kPassthrough},
    {"pci_power_mgmt", Treatment::kWarned, kPassthrough},
    {"pci_seize", Treatment::kWarned, kPassthrough},
    {"rdm", Treatment::kWarned, kPassthrough},
    {"dtdev", Treatment::kRefused, kPassthrough, refuse_when_set},
    {"iomem", Treatment::kRefused, kPassthrough, refuse_when_set},
    {"ioports", Treatment::kRefused, kPassthrough, refuse_when_set},
    {"irqs", Treatment::kRefused, kPassthrough, refuse_when_set},
    {"irq", Treatment::kRefused, kPassthrough, refuse_when_set},
    {"vscsi", Treatment::kRefused, kPassthrough, refuse_when_set},
    {"nfs_root", Treatment::kRefused, "a root over NFS: kiln boots the guest's disks", refuse_when_set},
    {"nfs_server", Treatment::kRefused, "a root over NFS: kiln boots the guest's disks", refuse_when_set},
    {"vtpm", Treatment::kWarned, "kiln's guests have no TPM", note_when_set},
    {"tpmif", Treatment::kWarned, "kiln's guests have no TPM", note_when_set},
    {"p9", Treatment::kWarned, "no 9p shares: copy files in with kiln cp or --file", note_when_set},
    {"pvcalls", Treatment::kWarned, kXenInternals, note_when_set},
    {"channel", Treatment::kWarned, "no Xen channels: kiln exec is kiln's channel to the guest", note_when_set},
    {"vuart", Treatment::kWarned, kXenMachine, note_when_set},
    {"dhcp", Treatment::kWarned, kXmIpConfig},
    {"ip", Treatment::kWarned, kXmIpConfig},
    {"netmask", Treatment::kWarned, kXmIpConfig},
    {"gateway", Treatment::kWarned, kXmIpConfig},
    {"hostname", Treatment::kWarned, "xm's kernel-level IP settings; kiln boot --hostname sets the guest's name"},
    {"interface", Treatment::kWarned, kXmIpConfig},
    {"nics", Treatment::kWarned, "xm's count of interfaces: the vif list decides"},
    {"vif_other_config", Treatment::kWarned, kXenInternals},
    {"netif", Treatment::kWarned, kXenInternals},
    {"blkif", Treatment::kWarned, kXenInternals},
    {"localtime", Treatment::kWarned, "the guest's clock is UTC; set its time zone inside the guest"},
    {"rtc_timeoffset", Treatment::kWarned, "the guest's clock is UTC; set its time zone inside the guest"},
    {"timer_mode", Treatment::kWarned, kXenMachine},
    {"tsc_mode", Treatment::kWarned, kXenMachine},
    {"hpet", Treatment::kWarned, kXenMachine},
    {"acpi", Treatment::kWarned, kXenMachine},
    {"acpi_s3", Treatment::kWarned, kXenMachine},
    {"acpi_s4", Treatment::kWarned, kXenMachine},
    {"acpi_firmware", Treatment::kWarned, kXenMachine},
    {"apic", Treatment::kWarned, kXenMachine},
    {"pae", Treatment::kWarned, kXenMachine},
    {"nx", Treatment::kWarned, kXenMachine},
    {"hap", Treatment::kWarned, kXenMachine},
    {"viridian", Treatment::kWarned, kXenMachine},
    {"nestedhvm", Treatment::kWarned, kXenMachine},
    {"cpuid", Treatment::kWarned, kXenMachine},
    {"cpuid_check", Treatment::kWarned, kXenMachine},
    {"altp2m", Treatment::kWarned, kXenMachine},
    {"shadow_memory", Treatment::kWarned, kXenMachine},
    {"e820_host", Treatment::kWarned, kXenMachine},
    {"vpt_align", Treatment::kWarned, kXenMachine},
    {"vhpt", Treatment::kWarned, kXenMachine},
    {"xen_platform_pci", Treatment::kWarned, kXenMachine},
    {"vendor_device", Treatment::kWarned, kXenMachine},
    {"smbios_firmware", Treatment::kWarned, kXenMachine},
    {"bios", Treatment::kWarned, "hvm guests boot through UEFI firmware (OVMF)"},
    {"firmware", Treatment::kWarned, "hvm guests boot through UEFI firmware (OVMF)"},
    {"hdtype", Treatment::kWarned, kXenMachine},
    {"isa", Treatment::kWarned, kXenMachine},
    {"monitor", Treatment::kWarned, "qemu's monitor is kiln's (QMP): kiln pause, save and the like"},
    {"fda", Treatment::kWarned, "kiln's guests have no floppy drive", note_when_set},
    {"fdb", Treatment::kWarned, "kiln's guests have no floppy drive", note_when_set},
    {"device_model", Treatment::kWarned, "kiln runs its own qemu"},
    {"device_model_args", Treatment::kWarned, "kiln runs its own qemu"},
    {"device_model_override", Treatment::kWarned, "kiln runs its own qemu"},
    {"device_model_version", Treatment::kWarned, "kiln runs its own qemu"},
    {"device_model_stubdomain_override", Treatment::kWarned, "kiln runs its own qemu"},
    {"stubdomain_kernel", Treatment::kWarned, "kiln runs its own qemu"},
    {"stubdomain_memory", Treatment::kWarned, "kiln runs its own qemu"},
    {"device_tree", Treatment::kWarned, kXenMachine},
    {"gic_version", Treatment::kWarned, kXenMachine},
    {"machine_address_size", Treatment::kWarned, kXenMachine},
    {"superpages", Treatment::kWarned, kXenInternals},
    {"max_event_channels", Treatment::kWarned, kXenInternals},
    {"event_channels", Treatment::kWarned, kXenInternals},
    {"max_grant_frames", Treatment::kWarned, kXenInternals},
    {"max_maptrack_frames", Treatment::kWarned, kXenInternals},
    {"driver_domain", Treatment::kWarned, kXenInternals},
    {"seclabel", Treatment::kWarned, kXenInternals},
    {"security", Treatment::kWarned, kXenInternals},
    {"access_control", Treatment::kWarned, kXenInternals},
    {"s3_integrity", Treatment::kWarned, kXenInternals},
    {"suppress_spurious_page_faults", Treatment::kWarned, kXenInternals},
    {"features", Treatment::kWarned, kXenInternals},
    {"guest_os_type", Treatment::kWarned, kXenInternals},
    {"nomigrate", Treatment::kWarned, kXenInternals},
    {"description", Treatment::kWarned, "a comment for the toolstack"},
    {"bootargs", Treatment::kWarned, "xm's arguments for the boot loader: bootloader_args"},
    {"on_watchdog", Treatment::kWarned, "kiln's guests have no watchdog device"},
    {"on_soft_reset", Treatment::kWarned, "a soft reset (kexec under Xen) restarts the guest as a reboot does"},
    {"on_xend_start", Treatment::kWarned, "xend's start-up: kiln instances start with kiln boot"},
    {"on_xend_stop", Treatment::kWarned, "xend's shut-down: kiln instances stop with kiln shutdown or destroy"},
    {"restart", Treatment::kWarned, "xm's older restart policy: use on_reboot and on_crash"},
    {"spice_clipboard_sharing", Treatment::kWarned, kNoDisplay, note_when_set},
    {"spice_image_compression", Treatment::kWarned, kNoDisplay, note_when_set},
    {"spice_streaming_video", Treatment::kWarned, kNoDisplay, note_when_set},
    {"spiceagent_mouse", Treatment::kWarned, kNoDisplay, note_when_set},
    {"spiceusbredirection", Treatment::kWarned, kNoDisplay, note_when_set},
    {"spicevdagent", Treatment::kWarned, kNoDisplay, note_when_set},
    {"vkb_device", Treatment::kWarned, kNoDisplay, note_when_set},
    {"passthrough", Treatment::kWarned, kPassthrough},
    {"rdm_mem_boundary", Treatment::kWarned, kPassthrough},
    {"mmio_hole", Treatment::kWarned, kXenMachine},
    {"acpi_laptop_slate", Treatment::kWarned, kXenMachine},
    {"altp2mhvm", Treatment::kWarned, kXenMachine},
    {"mca_caps", Treatment::kWarned, kXenMachine},
    {"ms_vm_genid", Treatment::kWarned, kXenMachine},
    {"msr_relaxed", Treatment::kWarned, kXenMachine},
    {"vpmu", Treatment::kWarned, kXenMachine},
    {"vmtrace_buf_kb", Treatment::kWarned, kXenMachine},
    {"tee", Treatment::kWarned, kXenMachine},
    {"bios_path_override", Treatment::kWarned, "hvm guests boot through UEFI firmware (OVMF)"},
    {"pvshim", Treatment::kWarned, kXenInternals},
    {"pvshim_path", Treatment::kWarned, kXenInternals},
    {"pvshim_cmdline", Treatment::kWarned, kXenInternals},
    {"pvshim_extra", Treatment::kWarned, kXenInternals},
    {"max_grant_version", Treatment::kWarned, kXenInternals},
    {"xend_suspend_evtchn_compat", Treatment::kWarned, kXenInternals},
    {"init_seclabel", Treatment::kWarned, kXenInternals},
    {"device_model_args_hvm", Treatment::kWarned, "kiln runs its own qemu"},
    {"device_model_args_pv", Treatment::kWarned, "kiln runs its own qemu"},
    {"device_model_stubdomain_seclabel", Treatment::kWarned, "kiln runs its own qemu"},
    {"device_model_user", Treatment::kWarned, "kiln runs its own qemu"},
    {"dm_restrict", Treatment::kWarned, "kiln runs its own qemu"},
    {"stubdomain_cmdline", Treatment::kWarned, "kiln runs its own qemu"},
    {"stubdomain_ramdisk", Treatment::kWarned, "kiln runs its own qemu"},
});

const XenKey* find_key(std::string_view key) {
  auto found = std::ranges::find(kXenKeys, key, &XenKey::key);
  return found == kXenKeys.end() ? nullptr : &*found;
}

std::string honoured_key_list() {
  std::string list;
  for (const XenKey& entry : kXenKeys) {
    if (entry.treatment != Treatment::kHonoured) continue;
    if (!list.empty()) list += ", ";
    list += entry.key;
  }
  return list;
}

void Settings::note(std::string_view key) {
  // Where the key is set, not its value: the list names keys.
  spec.source.unsupported.push_back({std::string(key), spec.source.of(key), std::string(doc_of(key))});
}

std::string_view Settings::doc_of(std::string_view key) const {
  const XenKey* entry = find_key(key);
  return entry ? entry->doc : std::string_view{};
}

// Reads one value at `index` of a statement whose brackets balance.
Result<Value> parse_value(const std::vector<Token>& tokens, size_t& index, std::string_view key,
                          const std::string& file) {
  const Token& token = tokens[index++];
  switch (token.kind) {
    case Token::kString: return Value{Value::kString, token.text, 0, {}, token.line, token.column};
    case Token::kInteger: return Value{Value::kInteger, "", token.number, {}, token.line, token.column};
    case Token::kOpen: break;
    default:
      return fail_at({file, token.line, token.column}, "expected a value for '{}', found {}", key, describe(token));
  }
  Value list{Value::kList, "", 0, {}, token.line, token.column};
  while (tokens[index].kind != Token::kClose) {
    KILN_ASSIGN(Value item, parse_value(tokens, index, key, file));
    list.items.push_back(std::move(item));
    const Token& next = tokens[index];
    if (next.kind == Token::kComma) {
      ++index;
    } else if (next.kind != Token::kClose) {
      return fail_at({file, next.line, next.column}, "expected ',' or ']' in the list of '{}', found {}", key,
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

  Location at(const Token& token) const { return {file, token.line, token.column}; }
  Result<> take(Token token);
  Result<> end_statement();
  Result<> apply(const std::string& key, const Value& value, const Location& where);
};

Result<> XenConfigParser::State::take(Token token) {
  if (depth > 0 && (token.kind == Token::kName || token.kind == Token::kEquals ||
                    token.kind == Token::kSemicolon))
    return fail_at(at(token), "unterminated list (opened at line {}): expected a value, "
                   "',' or ']' before {}", list_line, describe(token));
  switch (token.kind) {
    case Token::kSemicolon: return end_statement();
    case Token::kOpen:
      if (depth == 0) list_line = token.line;
      if (++depth > kMaxListDepth)
        return fail_at(at(token), "lists nested more than {} deep", kMaxListDepth);
      break;
    case Token::kClose:
      if (depth == 0) return fail_at(at(token), "unexpected ']': no list is open");
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
    return fail_at(at(key), "expected KEY = VALUE, found {}", describe(key));
  if (tokens.size() < 2 || tokens[1].kind != Token::kEquals)
    return fail_at(at(key), "expected '=' after key '{}'", key.text);
  if (tokens.size() < 3) return fail_at(at(key), "missing value after '{} ='", key.text);
  size_t index = 2;
  KILN_ASSIGN(Value value, parse_value(tokens, index, key.text, file));
  if (index < tokens.size())
    return fail_at(at(tokens[index]), "unexpected {} after the value of '{}': write one "
                   "KEY = VALUE per line, or separate them with ';'", describe(tokens[index]), key.text);
  return apply(key.text, value, at(key));
}

Result<> XenConfigParser::State::apply(const std::string& key, const Value& value,
                                       const Location& where) {
  DomainSource& source = settings.spec.source;
  const XenKey* entry = find_key(key);
  if (!entry)
    return fail_at(where, "unknown key '{}': not a Xen domain config key (kiln reads {}; `kiln help xen` lists "
                   "every key)", key, honoured_key_list());
  auto [first, inserted] = source.keys.emplace(key, where);
  if (entry->treatment == Treatment::kHonoured && !inserted)
    return fail_at(where, "'{}' is set twice (first at line {}); keep one", key, first->second.line);
  // Python let a later line win; a key kiln does not act on is named once.
  if (!inserted) return {};
  // What a reader finds wrong is in the value: it points there.
  if (entry->read) return entry->read(settings, key, value, Location{where.file, value.line, value.column});
  if (entry->treatment == Treatment::kRefused) return fail_at(where, "{} = ...: {}", key, entry->doc);
  settings.note(key);
  return {};
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
    return fail_at(Location{state.file, state.last_line}, "unterminated list (opened at line {}): the "
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
  if (spec.type != DomainType::kPv) add("type", quoted(domain_type_name(spec.type), '"'));
  add_string("bootloader", spec.bootloader);
  if (!spec.bootloader_args.empty()) {
    std::vector<std::string> quoted_args;
    for (const std::string& arg : spec.bootloader_args) quoted_args.push_back(quoted(arg, '\''));
    std::string list;
    for (const std::string& arg : quoted_args) list += (list.empty() ? "" : ", ") + arg;
    add("bootloader_args", "[" + list + "]");
  }
  add_string("kernel", spec.kernel);
  add_string("ramdisk", spec.ramdisk);
  if (spec.memory_mib > 0) add("memory", std::to_string(spec.memory_mib));
  add("vcpus", std::to_string(spec.vcpus));
  add_string("root", spec.root);
  add_string("extra", spec.extra);
  add_string("boot", spec.boot);
  std::vector<std::string> disks;
  for (const DomainDisk& disk : spec.disks) disks.push_back(write_xen_disk_spec(disk));
  if (!disks.empty()) add("disk", list_value(disks));
  std::vector<std::string> vifs;
  for (const DomainVif& vif : spec.vifs) vifs.push_back(vif_spec(vif));
  if (!vifs.empty()) add("vif", list_value(vifs));
  add("on_poweroff", quoted(action_name(spec.on_poweroff), '"'));
  add("on_reboot", quoted(action_name(spec.on_reboot), '"'));
  add("on_crash", quoted(action_name(spec.on_crash), '"'));
  return out;
}

namespace {

Result<DomainSpec> parse_lines(XenConfigParser& parser, std::string_view text) {
  int line_number = 0;
  while (!text.empty()) {
    size_t newline = text.find('\n');
    KILN_TRY(parser.feed_line(text.substr(0, newline), ++line_number));
    if (newline == std::string_view::npos) break;
    text.remove_prefix(newline + 1);
  }
  return parser.finish();
}

}  // namespace

Result<DomainSpec> parse_xen_config(std::string_view text, std::string_view file_name,
                                    std::vector<UnsupportedKey>* notes) {
  XenConfigParser parser(file_name);
  auto spec = parse_lines(parser, text);
  // A finished spec took the parser's notes with it.
  if (notes) *notes = spec ? spec->source.unsupported : parser.notes();
  return spec;
}

const std::vector<UnsupportedKey>& XenConfigParser::notes() const {
  return state_->settings.spec.source.unsupported;
}

std::vector<XenKeyInfo> xen_config_keys() {
  std::vector<XenKeyInfo> keys;
  for (const XenKey& entry : kXenKeys) keys.push_back({entry.key, entry.treatment, entry.doc});
  return keys;
}

}  // namespace kiln

namespace kiln {

namespace {

std::string_view treatment_name(XenKeyTreatment treatment) {
  switch (treatment) {
    case XenKeyTreatment::kHonoured: return "honoured";
    case XenKeyTreatment::kWarned: return "warned";
    case XenKeyTreatment::kRefused: return "refused";
  }
  return "";
}

}  // namespace

std::string xen_config_reference_text() {
  std::string out =
      "Xen domain config keys (xl.cfg(5), xm): what `kiln boot FILE.cfg` does with each.\n"
      "honoured: acted on; warned: ignored with one warning naming the key and line;\n"
      "refused: the boot stops, naming the key and line. Any other key is an error.\n\n";
  for (const XenKeyInfo& key : xen_config_keys())
    out += fmt::format("  {:<24} {:<9} {}\n", key.key, treatment_name(key.treatment), key.doc);
  return out;
}

std::string xen_config_reference_markdown() {
  std::string out =
      "# Xen domain config keys\n\n"
      "<!-- generated by `kiln help xen --markdown` from the table the parser reads keys by "
      "(formats/domain/xen_config.cc); do not edit -->\n\n"
      "`kiln boot FILE.cfg` reads the domain configs of xl (xl.cfg(5)) and of xm. Each key is "
      "**honoured** (acted on), **warned** (ignored, with one warning naming the key and its line and "
      "column, also when the boot fails for another reason) or **refused** (the boot stops, naming the key, "
      "its line and column and the reason). A key Xen does not know is an error. Disk specs are read in every "
      "form of xl-disk-configuration(5) and xm (`formats/domain/xen_disk_spec.h`).\n\n"
      "| key | kiln | what kiln does, or why not |\n|---|---|---|\n";
  for (const XenKeyInfo& key : xen_config_keys())
    out += fmt::format("| `{}` | {} | {} |\n", key.key, treatment_name(key.treatment), key.doc);
  return out;
}

}  // namespace kiln
