//! Parse time of one notification: fixture 03 (the three-event burst of one arriving
//! message, 2.9 KB) and a 100-event notification. `cargo bench -p herald-gateway`.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use herald_gateway::{Limits, parse};

fn fixture_03() -> Vec<u8> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../testdata/ews/03-burst-created-newmail-modified.xml"
    );
    std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Fixture 03 with its three events repeated 33 times, plus one more `CreatedEvent`: 100.
fn hundred_events(fixture: &[u8]) -> Vec<u8> {
    let text = String::from_utf8(fixture.to_vec()).unwrap_or_default();
    let start = text.find("<t:CreatedEvent>").unwrap_or_default();
    let end = text.find("</m:Notification>").unwrap_or_default();
    let created_end =
        text.find("</t:CreatedEvent>").unwrap_or_default() + "</t:CreatedEvent>".len();
    let three = &text[start..end];
    let created = &text[start..created_end];
    format!(
        "{}{}{}{}",
        &text[..start],
        three.repeat(33),
        created,
        &text[end..]
    )
    .into_bytes()
}

fn bench(c: &mut Criterion) {
    let limits = Limits::default();
    let fixture = fixture_03();
    let hundred = hundred_events(&fixture);
    let parsed = parse(&hundred, &limits).unwrap_or_else(|e| panic!("100 events: {e}"));
    assert_eq!(
        parsed.messages[0]
            .notification
            .as_ref()
            .map(|n| n.events.len()),
        Some(100)
    );

    let mut group = c.benchmark_group("parse");
    group.throughput(Throughput::Bytes(fixture.len() as u64));
    group.bench_function("fixture_03", |b| {
        b.iter(|| parse(black_box(&fixture), &limits))
    });
    group.throughput(Throughput::Bytes(hundred.len() as u64));
    group.bench_function("100_events", |b| {
        b.iter(|| parse(black_box(&hundred), &limits))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
