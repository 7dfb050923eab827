# One server per batch of shards: a service in the same group as its consumers, so that it runs
# in the same Slurm job on the node that generates, on a free loopback port.
# Registration and verification of the voices happen inside this job (see README, design notes):
# in a service group all jobs start together, so a separate registration job could not be
# ordered before generation.
rule server:
    input:
        checkpoint_provenance,
    output:
        service(f"{SERVERS}/{{batch}}.endpoint.json"),
    log:
        f"{OUT}/logs/server/{{batch}}.log",
    group:
        "tts"
    conda:
        "../../envs/fishflow.yaml"
    threads: 1
    params:
        spec=server_spec,
        python=sys.executable,
    shell:
        # The empty endpoint file at once: Snakemake fails the group if a service's output is
        # missing after --latency-wait, and Python's start-up alone can take longer on a busy
        # node. exec: Snakemake's SIGTERM at the end of the group must reach the launcher.
        ": > {output:q}; exec {params.python:q} -m fishflow.serving.launcher --spec {params.spec:q}"
        " --endpoint {output:q} --log {log:q}"
