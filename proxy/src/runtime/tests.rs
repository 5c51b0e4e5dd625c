use super::*;

#[test]
fn unset_takes_the_available_cpus_up_to_two() {
    assert_eq!(workers(None, 1), 1);
    assert_eq!(workers(None, 2), 2);
    assert_eq!(workers(None, 64), DEFAULT_WORKERS);
    // A platform that reports nothing still gets one worker.
    assert_eq!(workers(None, 0), 1);
}

#[test]
fn zero_means_every_available_cpu_and_n_is_taken_as_asked() {
    assert_eq!(workers(Some(0), 64), 64);
    assert_eq!(workers(Some(0), 1), 1);
    assert_eq!(workers(Some(1), 64), 1);
    assert_eq!(workers(Some(4), 2), 4);
}

#[test]
fn one_worker_gets_the_current_thread_scheduler() {
    assert_eq!(Scheduler::for_workers(1), Scheduler::CurrentThread);
    assert_eq!(Scheduler::for_workers(3), Scheduler::MultiThread(3));
    assert_eq!(Scheduler::for_workers(1).workers(), 1);
    assert_eq!(Scheduler::for_workers(3).workers(), 3);
}

#[test]
fn each_scheduler_runs_spawned_tasks_with_io_and_timers() {
    for scheduler in [Scheduler::CurrentThread, Scheduler::MultiThread(2)] {
        let rt = scheduler.build().expect("runtime builds");
        let flavor = rt.handle().runtime_flavor();
        let echoed = rt.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            let addr = listener.local_addr()?;
            let server = tokio::spawn(async move {
                let (mut s, _) = listener.accept().await?;
                let mut buf = [0u8; 5];
                tokio::io::AsyncReadExt::read_exact(&mut s, &mut buf).await?;
                tokio::io::AsyncWriteExt::write_all(&mut s, &buf).await?;
                std::io::Result::Ok(())
            });
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            let mut c = tokio::net::TcpStream::connect(addr).await?;
            tokio::io::AsyncWriteExt::write_all(&mut c, b"hello").await?;
            let mut back = [0u8; 5];
            tokio::io::AsyncReadExt::read_exact(&mut c, &mut back).await?;
            server.await.map_err(std::io::Error::other)??;
            std::io::Result::Ok(back)
        });
        assert_eq!(echoed.expect("echo over the runtime"), *b"hello");
        let want = match scheduler {
            Scheduler::CurrentThread => tokio::runtime::RuntimeFlavor::CurrentThread,
            Scheduler::MultiThread(_) => tokio::runtime::RuntimeFlavor::MultiThread,
        };
        assert_eq!(flavor, want);
    }
}
