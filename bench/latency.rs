//! A mail server far away, for `bench/run`'s second send figure: a loopback
//! TCP relay that holds every reply from the server for a fixed time before
//! the client sees it, as a relay across the internet would (the round trip,
//! not the bandwidth, is what it adds). Both Bulletin and `smtp-source` send
//! through it into the same `smtp-sink`, at the same concurrency, so the
//! figure shows what pipelining buys when waiting, not the CPU, is the limit.
//!
//! Usage: bulletin-bench-latency LISTEN_ADDR UPSTREAM_ADDR ROUND_TRIP_MS

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Replies read but not yet passed on, per connection: SMTP replies are small and few.
const IN_FLIGHT: usize = 1024;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, listen, upstream, round_trip] = args.as_slice() else {
        eprintln!("usage: bulletin-bench-latency LISTEN_ADDR UPSTREAM_ADDR ROUND_TRIP_MS");
        std::process::exit(2);
    };
    let delay = Duration::from_millis(round_trip.parse().expect("ROUND_TRIP_MS is a number of milliseconds"));
    let listener = TcpListener::bind(listen).await?;
    loop {
        let (client, _) = listener.accept().await?;
        let upstream = upstream.clone();
        tokio::spawn(async move {
            if let Ok(server) = TcpStream::connect(&upstream).await {
                relay(client, server, delay).await;
            }
        });
    }
}

async fn relay(client: TcpStream, server: TcpStream, delay: Duration) {
    let _ = (client.set_nodelay(true), server.set_nodelay(true));
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let up = async move {
        let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
        let _ = server_write.shutdown().await;
    };
    // A delay line: each reply is stamped when read and passed on `delay` later, in order.
    let (held, mut due) = mpsc::channel::<(Instant, Vec<u8>)>(IN_FLIGHT);
    let read = async move {
        let mut buf = vec![0; 64 * 1024];
        while let Ok(n @ 1..) = server_read.read(&mut buf).await {
            if held.send((Instant::now() + delay, buf[..n].to_vec())).await.is_err() {
                break;
            }
        }
    };
    let write = async move {
        while let Some((at, bytes)) = due.recv().await {
            tokio::time::sleep_until(at).await;
            if client_write.write_all(&bytes).await.is_err() {
                break;
            }
        }
        let _ = client_write.shutdown().await;
    };
    tokio::join!(up, read, write);
}
