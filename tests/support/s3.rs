//! A real S3-compatible server on loopback: moto's server mode (`pip install 'moto[server]'`,
//! as .ci/run does), a separate process speaking S3's HTTP API, conditional puts included.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct S3 {
    child: Child,
    port: u16,
    pub bucket: String,
}

impl S3 {
    /// Starts a server with one empty bucket.
    pub fn start(bucket: &str) -> S3 {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut server = S3 { child: Self::spawn(port), port, bucket: bucket.to_string() };
        server.create_bucket();
        server
    }

    fn spawn(port: u16) -> Child {
        Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto's S3 server is needed: pip install 'moto[server]' (.ci/run does)")
    }

    fn create_bucket(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match self.request("PUT", &format!("/{}", self.bucket)) {
                Some(200) => break,
                status => assert!(Instant::now() < deadline, "the S3 server did not start: {status:?}"),
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Starts the server again on the same port, with its bucket empty (moto keeps objects in
    /// memory).
    pub fn restart(&mut self) {
        self.stop();
        self.child = Self::spawn(self.port);
        self.create_bucket();
    }

    fn request(&self, method: &str, path: &str) -> Option<u16> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        write!(stream, "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            .ok()?;
        let mut line = String::new();
        BufReader::new(stream).read_line(&mut line).ok()?;
        line.split_whitespace().nth(1)?.parse().ok()
    }

    /// The bytes of an object, as another S3 client (boto3, which moto brings) reads them.
    pub fn get(&self, key: &str) -> Vec<u8> {
        let out = Command::new("python3")
            .args([
                "-c",
                "import boto3, sys\n\
                 s3 = boto3.client('s3', endpoint_url=sys.argv[1], region_name='us-east-1',\n\
                 \x20   aws_access_key_id='applearner-test', aws_secret_access_key='applearner-test-secret')\n\
                 sys.stdout.buffer.write(s3.get_object(Bucket=sys.argv[2], Key=sys.argv[3])['Body'].read())",
                &format!("http://127.0.0.1:{}", self.port),
                &self.bucket,
                key,
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "GET {key}: {}", String::from_utf8_lossy(&out.stderr));
        out.stdout
    }

    /// The store URL of `prefix` in the bucket.
    pub fn url(&self, prefix: &str) -> String {
        format!("s3://{}/{prefix}", self.bucket)
    }

    /// The environment a user sets for an S3-compatible endpoint (credentials never go in
    /// the config).
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", "applearner-test".into()),
            ("AWS_SECRET_ACCESS_KEY", "applearner-test-secret".into()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ENDPOINT", format!("http://127.0.0.1:{}", self.port)),
            ("AWS_ALLOW_HTTP", "true".into()),
        ]
    }

    /// Stops the server (its data is gone with it).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for S3 {
    fn drop(&mut self) {
        self.stop();
    }
}
