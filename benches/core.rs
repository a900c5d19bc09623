//! Criterion micro-benchmarks of the publish path's parts: validation, topic check, routing,
//! and a whole publish (validate, copy, number, route, enqueue) into a bus whose dispatcher
//! runs a no-op callback. Run with `cargo bench --bench core`.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use jsonbus::router::Router;
use jsonbus::topic::{self, Kind};
use jsonbus::validate::{check_payload, valid_by_blocks, valid_by_bytes};
use jsonbus::{Bus, Options, OK};

/// A 200-byte order message, as in the benchmarks against the Go seed and the C queue.
fn payload() -> Vec<u8> {
    let head =
        r#"{"id":123456,"price":101.25,"sym":"ABCD","side":"buy","qty":100,"venue":"XNAS","pad":""#;
    let mut p = head.as_bytes().to_vec();
    p.resize(198, b'0');
    p.extend_from_slice(b"\"}");
    p
}

/// The payload `bench/driver.c` publishes (its `make_payload`): an object with a 20-digit
/// string, an array of small objects (numbers, booleans, strings) and a padding string.
fn driver_payload(size: usize) -> Vec<u8> {
    let (head, mid, tail) = (
        r#"{"t":"00000000000000000000","d":["#,
        r#"],"p":""#,
        r#""}"#,
    );
    let mut p = head.to_string();
    for id in 1u32.. {
        let sep = if id == 1 { "" } else { "," };
        let ok = if id & 1 == 1 { "true" } else { "false" };
        let item = format!(r#"{sep}{{"id":{},"ok":{ok},"v":"abcdefghij"}}"#, id * 7919);
        if p.len() + item.len() + mid.len() + tail.len() + 8 > size {
            break;
        }
        p += &item;
    }
    p += mid;
    while p.len() < size - tail.len() {
        p.push('x');
    }
    p += tail;
    p.into_bytes()
}

fn validation(c: &mut Criterion) {
    let p = payload();
    let mut g = c.benchmark_group("validate");
    g.throughput(Throughput::Bytes(p.len() as u64));
    g.bench_function("200B order", |b| {
        b.iter(|| check_payload(black_box(&p), 1 << 24, 128))
    });
    for size in [200, 4096, 65536] {
        let d = driver_payload(size);
        assert_eq!(d.len(), size);
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_function(format!("driver {size}B"), |b| {
            b.iter(|| check_payload(black_box(&d), 1 << 24, 128))
        });
    }
    let big: Vec<u8> = format!(
        "[{}]",
        vec![r#"{"k":"value","n":[1,2.5,-3e4],"t":true}"#; 1500].join(",")
    )
    .into_bytes();
    g.throughput(Throughput::Bytes(big.len() as u64));
    g.bench_function("64KiB array", |b| {
        b.iter(|| check_payload(black_box(&big), 1 << 24, 128))
    });
    g.finish();
    // The two validators on their own: where `check_payload` switches from one to the other.
    let mut g = c.benchmark_group("paths");
    for size in [200, 400, 512, 1024, 4096, 65536] {
        let d = driver_payload(size);
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_function(format!("bytes {size}B"), |b| {
            b.iter(|| valid_by_bytes(black_box(&d), 128))
        });
        if valid_by_blocks(&d, 128).is_some() {
            g.bench_function(format!("blocks {size}B"), |b| {
                b.iter(|| valid_by_blocks(black_box(&d), 128))
            });
        }
    }
    g.finish();
    c.bench_function("topic check orders.eu.new", |b| {
        b.iter(|| topic::check(black_box("orders.eu.new"), Kind::Topic))
    });
}

fn routing(c: &mut Criterion) {
    let mut g = c.benchmark_group("route");
    for extra in [0usize, 10_000] {
        let mut r = Router::default();
        r.insert("orders.eu.new", 0, 0u32);
        for i in 0..extra {
            r.insert(&format!("other.{i}.new"), i as i64 + 1, 1);
        }
        g.bench_function(format!("1 match, {extra} others"), |b| {
            b.iter(|| {
                let mut n = 0;
                r.for_each_match(black_box("orders.eu.new"), |_| n += 1);
                n
            })
        });
    }
    g.finish();
}

fn publish(c: &mut Criterion) {
    let bus = Bus::new(Options::parse(Some(r#"{"queue_capacity":1000000}"#)).unwrap()).unwrap();
    bus.subscribe(">", Box::new(|_| OK)).unwrap();
    let p = payload();
    let mut g = c.benchmark_group("publish");
    g.throughput(Throughput::Elements(1));
    g.bench_function("200B, 1 subscriber", |b| {
        b.iter(|| bus.publish("default", black_box(&p)).unwrap())
    });
    g.finish();
    bus.close(None).unwrap();
}

criterion_group!(benches, validation, routing, publish);
criterion_main!(benches);
