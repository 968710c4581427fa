//! The four resources a host shares among its nodes (CPU, memory, disk, bandwidth) and the
//! [`Resources`] shape that holds one value per resource: an allocation, a capacity, a usage.
//! The vocabulary every layer speaks; it imports nothing of the crate.

/// The four resources a host has and nodes get a share of. Generic so the same shape holds a
/// full allocation or capacity (`Resources<f64>`) and an observation where a node may not
/// report every resource (`Resources<Option<f64>>`).
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Resources<T> {
    /// CPU cores (fractions allowed).
    pub cpu_cores: T,
    /// Memory in bytes.
    pub memory_bytes: T,
    /// Disk space in bytes.
    pub disk_bytes: T,
    /// Network bandwidth in bytes per second.
    pub bandwidth_bytes_per_second: T,
}

/// A node's share of the host, or the host's capacity. Every field is in base units.
pub type Allocation = Resources<f64>;

/// One of the four resources, to iterate over them and to name their series.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Resource {
    CpuCores,
    MemoryBytes,
    DiskBytes,
    BandwidthBytesPerSecond,
}

impl Resource {
    pub const ALL: [Resource; 4] = [
        Resource::CpuCores,
        Resource::MemoryBytes,
        Resource::DiskBytes,
        Resource::BandwidthBytesPerSecond,
    ];

    /// The name as it appears in config keys and metric names (`cpu_cores`, …).
    pub fn key(self) -> &'static str {
        match self {
            Resource::CpuCores => "cpu_cores",
            Resource::MemoryBytes => "memory_bytes",
            Resource::DiskBytes => "disk_bytes",
            Resource::BandwidthBytesPerSecond => "bandwidth_bytes_per_second",
        }
    }

    /// The unit for help texts.
    pub fn unit(self) -> &'static str {
        match self {
            Resource::CpuCores => "CPU cores",
            Resource::MemoryBytes => "bytes of memory",
            Resource::DiskBytes => "bytes of disk",
            Resource::BandwidthBytesPerSecond => "bytes per second of bandwidth",
        }
    }
}

impl<T: Copy> Resources<T> {
    pub fn get(&self, r: Resource) -> T {
        match r {
            Resource::CpuCores => self.cpu_cores,
            Resource::MemoryBytes => self.memory_bytes,
            Resource::DiskBytes => self.disk_bytes,
            Resource::BandwidthBytesPerSecond => self.bandwidth_bytes_per_second,
        }
    }

    pub fn set(&mut self, r: Resource, v: T) {
        match r {
            Resource::CpuCores => self.cpu_cores = v,
            Resource::MemoryBytes => self.memory_bytes = v,
            Resource::DiskBytes => self.disk_bytes = v,
            Resource::BandwidthBytesPerSecond => self.bandwidth_bytes_per_second = v,
        }
    }

    pub fn map<U>(&self, mut f: impl FnMut(Resource, T) -> U) -> Resources<U> {
        Resources {
            cpu_cores: f(Resource::CpuCores, self.cpu_cores),
            memory_bytes: f(Resource::MemoryBytes, self.memory_bytes),
            disk_bytes: f(Resource::DiskBytes, self.disk_bytes),
            bandwidth_bytes_per_second: f(
                Resource::BandwidthBytesPerSecond,
                self.bandwidth_bytes_per_second,
            ),
        }
    }
}
