#include "runtime/hypervisor_command.h"

#include <sched.h>
#include <unistd.h>

#include "base/subprocess.h"
#include "formats/image/guest_protocol.h"
#include "runtime/boot_source.h"

namespace kiln {
namespace {

std::string joined(const std::vector<std::string>& words) {
  std::string out;
  for (const std::string& word : words) {
    if (word.empty()) continue;
    if (!out.empty()) out += ' ';
    out += word;
  }
  return out;
}

}  // namespace

const Architecture& architecture_of(const InstanceSpec& spec) {
  const Architecture* arch = find_architecture(spec.architecture);
  return arch ? *arch : architectures().front();
}

std::string guest_command_line(const InstanceSpec& spec) {
  const Personality& p = spec.personality;
  const bool uml = spec.backend == BackendKind::kUml;
  // Under UML too the console is the first serial line, so that systemd
  // starts a serial getty on it.
  std::string console = "console=" + std::string(uml ? "ttyS0" : architecture_of(spec).serial_console);
  bool slirp = uml && !spec.network.nics.empty() && spec.network.nics.front().kind == NetworkKind::kUser;
  // The seed disk comes after the instance's disks; naming it spares the
  // guest agent a wait for udev to find it by label.
  std::string seed = std::string(kSeedArgument) + guest_device(spec.backend, spec.disks.size(), 0);
  // Debian's UML kernel makes 256 legacy BSD pty pairs. No one uses them,
  // but udev's coldplug processes all 512 devices: measured, 7 s of a 20 s
  // boot to ready.
  // The exec channel: UML's second serial line, or qemu's virtio-serial
  // port, which the agent finds by name.
  std::string agent = std::string(kAgentArgument) + (uml ? "/dev/ttyS1" : "virtio:" + std::string(kAgentPortName));
  return joined({"root=" + spec.root, "ro", spec.kernel_args, console, std::string(kInstanceArgument) + spec.id, seed, agent,
                 slirp ? std::string(kSlirpArgument) : "",
                 spec.network.nics.empty() ? std::string(kNoNicsArgument) : "", uml ? std::string(kPowerOffArgument) : "",
                 uml ? "pty.legacy_count=0" : "",
                 // eth0, eth1... in the order of the NICs, on both backends
                 // and as Xen named them, rather than qemu's PCI slot names.
                 uml ? "" : "net.ifnames=0",
                 p.machine_id.empty() ? "" : "systemd.machine_id=" + p.machine_id,
                 p.hostname.empty() ? "" : "systemd.hostname=" + p.hostname});
}

std::vector<QemuNic> qemu_nics(const NetworkSpec& net, int slots) {
  std::vector<QemuNic> nics;
  bool forwarded = false;
  for (size_t i = 0; i < net.nics.size(); ++i) {
    const NicSpec& nic = net.nics[i];
    std::string netdev;
    if (nic.kind == NetworkKind::kUser) {
      netdev = fmt::format("user,id=net{}", i);
      // Each its own subnet (10.0.2.0/24, then 10.0.3.0/24...): on one
      // shared subnet the guest answers through whichever NIC it likes.
      if (i > 0) netdev += fmt::format(",net=10.0.{}.0/24", 2 + i);
      // Published ports go through the first NIC; --ssh-port through the
      // first on user networking.
      if (i == 0)
        for (const PortPublication& port : net.published)
          netdev += fmt::format(",hostfwd={}:{}:{}-:{}", port.protocol, port.host_address, port.host_port, port.guest_port);
      if (net.ssh_port && !forwarded) netdev += fmt::format(",hostfwd=tcp:127.0.0.1:{}-:22", net.ssh_port);
      forwarded = true;
    } else if (nic.kind == NetworkKind::kSocket) {
      // On loopback, so that nothing leaves the host.
      netdev = fmt::format("socket,id=net{},mcast={},localaddr=127.0.0.1", i, nic.socket);
    } else {
      netdev = fmt::format("tap,id=net{},ifname={},script=no,downscript=no", i, nic.tap);
    }
    std::string device = fmt::format("virtio-net-pci,netdev=net{},mac={}", i, nic.mac);
    if (static_cast<int>(i) < slots) device += fmt::format(",id={}{},bus={}{}", kNicIdPrefix, i, kNicSlotPrefix, i);
    nics.push_back({std::move(netdev), std::move(device)});
  }
  return nics;
}

std::vector<std::string> qemu_nic_arguments(const NetworkSpec& net, int slots) {
  std::vector<std::string> argv;
  for (const QemuNic& nic : qemu_nics(net, slots)) argv.insert(argv.end(), {"-netdev", nic.netdev, "-device", nic.device});
  return argv;
}

std::vector<std::string> uml_nic_arguments(const NetworkSpec& net, const std::string& slirp) {
  std::vector<std::string> argv;
  for (size_t i = 0; i < net.nics.size(); ++i) {
    const NicSpec& nic = net.nics[i];
    // SLIP, not Ethernet: slirp's guest side has no MAC address.
    if (nic.kind == NetworkKind::kUser) {
      argv.push_back(fmt::format("eth{}=slirp,,{}", i, slirp));
    } else if (nic.kind == NetworkKind::kSocket) {
      // UML's transport takes no interface: a TTL of 0 keeps its frames
      // to the host's own sockets.
      std::string socket = nic.socket;
      socket[socket.rfind(':')] = ',';
      argv.push_back(fmt::format("eth{}=mcast,{},{},0", i, nic.mac, socket));
    } else {
      argv.push_back(fmt::format("eth{}=tuntap,{},{}", i, nic.tap, nic.mac));
    }
  }
  return argv;
}

Result<std::vector<std::string>> qemu_command(const InstanceSpec& spec, const InstancePaths& paths,
                                              const LaunchOptions& options) {
  const Architecture& arch = architecture_of(spec);
  KILN_ASSIGN(std::string qemu, find_program(arch.qemu_system));
  std::vector<std::string> argv = {
      qemu,
      "-name", fmt::format("guest={},process=kiln:{}", spec.name, spec.name),
      "-machine", fmt::format("{},accel={}", arch.qemu_machine, spec.kvm ? "kvm" : "tcg"),
      "-cpu", spec.kvm ? "host" : std::string(arch.tcg_cpu),
      "-m", fmt::format("{}M", spec.memory_mib),
      "-smp", std::to_string(spec.vcpus),
      "-nodefaults", "-no-user-config", "-display", "none",
      "-chardev", "stdio,id=console,signal=off", "-serial", "chardev:console",
      "-qmp", fmt::format("unix:{},server=on,wait=off", paths.qmp_events_socket.string()),
      // A guest reboot or panic ends or stops qemu, so that the supervisor
      // applies the instance's on_reboot and on_crash policies.
      "-no-reboot", "-action", "panic=pause", "-device", std::string(arch.panic_device),
      // Entropy for the guest's first boot (ssh host keys) without waiting.
      "-device", "virtio-rng-pci",
      // The exec channel; the supervisor connects to it once qemu runs.
      "-device", "virtio-serial-pci,id=kiln-serial",
      "-chardev", fmt::format("socket,id=kiln-exec,path={},server=on,wait=off", paths.agent_socket.string()),
      "-device", fmt::format("virtserialport,bus=kiln-serial.0,chardev=kiln-exec,name={}", kAgentPortName),
  };
  // Changed on a resume from a snapshot, so that the guest kernel reseeds.
  if (!spec.generation_id.empty()) argv.insert(argv.end(), {"-device", "vmgenid,guid=" + spec.generation_id});
  if (spec.firmware) {
    // The disk's boot loader gives the kernel its command line; the agent
    // finds its channel in this OEM string instead.
    argv.insert(argv.end(), {"-smbios", fmt::format("type=11,value={}virtio:{}", kAgentArgument, kAgentPortName)});
    argv.insert(argv.end(), {"-drive", fmt::format("if=pflash,format=raw,unit=0,readonly=on,file={}", arch.firmware_code),
                             "-drive", fmt::format("if=pflash,format=raw,unit=1,file={}",
                                                   (paths.state_dir / "OVMF_VARS.fd").string())});
  } else {
    argv.insert(argv.end(), {"-kernel", spec.kernel.string(), "-append", guest_command_line(spec)});
    if (!spec.initrd.empty()) argv.insert(argv.end(), {"-initrd", spec.initrd.string()});
  }
  // A UML instance of the same image holds a POSIX read lock on the whole
  // baked file, which qemu's image locking takes for a writer that shares
  // nothing, and qemu then refuses to start. kiln never writes a baked image
  // (a re-bake puts new files in place), so the backing file goes unlocked.
  for (size_t i = 0; i < spec.disks.size(); ++i) {
    argv.insert(argv.end(),
                {"-drive", fmt::format("file={},if=none,id=disk{},format=qcow2,discard=unmap,backing.file.locking=off{}",
                                       paths.overlay(i, BackendKind::kQemu).string(), i,
                                       spec.disks[i].read_only ? ",readonly=on" : ""),
                 "-device", fmt::format("virtio-blk-pci,drive=disk{}", i)});
  }
  argv.insert(argv.end(), {"-drive", fmt::format("file={},if=none,id=seed,format=raw,readonly=on", paths.seed.string()),
                           "-device", "virtio-blk-pci,drive=seed"});
  // PCIe hotplug slots, each its own root port (q35's root bus takes no
  // hotplug). The NICs, first, on them: the same machine whether they came
  // with it or were plugged in once it ran.
  for (int i = 0; i < spec.nic_slots; ++i)
    argv.insert(argv.end(), {"-device", fmt::format("pcie-root-port,id={}{},chassis={}", kNicSlotPrefix, i, i + 1)});
  if (!options.nics_later) {
    std::vector<std::string> nics = qemu_nic_arguments(spec.network, spec.nic_slots);
    argv.insert(argv.end(), nics.begin(), nics.end());
  }
  if (options.incoming) argv.insert(argv.end(), {"-incoming", "defer"});
  if (options.start_paused) argv.push_back("-S");
  return argv;
}

Result<std::vector<std::string>> uml_command(const InstanceSpec& spec, const InstancePaths& paths) {
  KILN_ASSIGN(std::string uml, find_program(kUmlBinary));
  std::vector<std::string> argv = {uml, "umid=" + spec.name, "uml_dir=" + paths.uml_dir.string() + "/",
                                   fmt::format("mem={}M", spec.memory_mib)};
  // "c": UML takes no lock of its own. Its lock covers the whole of the
  // baked image, which qemu reads as one held on every byte and so refuses
  // to open the image beside it (a qemu instance, or qemu-img). The
  // instance's own lock keeps its overlay to itself.
  for (size_t i = 0; i < spec.disks.size(); ++i) {
    const DiskSpec& disk = spec.disks[i];
    if (disk.read_only) {
      argv.push_back(fmt::format("ubd{}rc={}", i, disk.base.string()));
    } else {
      argv.push_back(fmt::format("ubd{}c={},{}", i, paths.overlay(i, BackendKind::kUml).string(), disk.base.string()));
    }
  }
  argv.push_back(fmt::format("ubd{}r={}", spec.disks.size(), paths.seed.string()));
  argv.insert(argv.end(), {"con=null", "ssl=null", "ssl0=fd:0,fd:1", fmt::format("ssl1=fd:{}", kUmlAgentChannelFd)});
  std::string slirp;
  if (!spec.network.nics.empty() && spec.network.nics.front().kind == NetworkKind::kUser) {
    KILN_ASSIGN(slirp, find_program("slirp"));
  }
  std::vector<std::string> nics = uml_nic_arguments(spec.network, slirp);
  argv.insert(argv.end(), nics.begin(), nics.end());
  argv.push_back(guest_command_line(spec));
  return argv;
}

int uml_host_cpu(const std::vector<int>& allowed, std::string_view instance_id) {
  if (allowed.empty()) return 0;
  uint64_t hash = 1469598103934665603ull;  // FNV-1a: the same choice in every kiln
  for (unsigned char c : instance_id) hash = (hash ^ c) * 1099511628211ull;
  return allowed[hash % allowed.size()];
}

std::vector<int> allowed_cpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  std::vector<int> cpus;
  if (::sched_getaffinity(0, sizeof set, &set) != 0) return cpus;
  for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu)
    if (CPU_ISSET(cpu, &set)) cpus.push_back(cpu);
  return cpus;
}

}  // namespace kiln
