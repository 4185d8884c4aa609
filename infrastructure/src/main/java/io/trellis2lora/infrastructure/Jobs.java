package io.trellis2lora.infrastructure;

import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import software.amazon.awscdk.Aws;
import software.amazon.awscdk.Duration;
import software.amazon.awscdk.RemovalPolicy;
import software.amazon.awscdk.Size;
import software.amazon.awscdk.Stack;
import software.amazon.awscdk.services.batch.Action;
import software.amazon.awscdk.services.batch.AllocationStrategy;
import software.amazon.awscdk.services.batch.CustomReason;
import software.amazon.awscdk.services.batch.EcsEc2ContainerDefinition;
import software.amazon.awscdk.services.batch.EcsEc2ContainerDefinitionProps;
import software.amazon.awscdk.services.batch.EcsJobDefinition;
import software.amazon.awscdk.services.batch.EcsJobDefinitionProps;
import software.amazon.awscdk.services.batch.EcsMachineImage;
import software.amazon.awscdk.services.batch.EcsMachineImageType;
import software.amazon.awscdk.services.batch.EcsVolume;
import software.amazon.awscdk.services.batch.HostVolumeOptions;
import software.amazon.awscdk.services.batch.JobQueue;
import software.amazon.awscdk.services.batch.JobQueueProps;
import software.amazon.awscdk.services.batch.JobStateTimeLimitAction;
import software.amazon.awscdk.services.batch.JobStateTimeLimitActionsAction;
import software.amazon.awscdk.services.batch.JobStateTimeLimitActionsReason;
import software.amazon.awscdk.services.batch.JobStateTimeLimitActionsState;
import software.amazon.awscdk.services.batch.LinuxParameters;
import software.amazon.awscdk.services.batch.LinuxParametersProps;
import software.amazon.awscdk.services.batch.ManagedEc2EcsComputeEnvironment;
import software.amazon.awscdk.services.batch.ManagedEc2EcsComputeEnvironmentProps;
import software.amazon.awscdk.services.batch.OrderedComputeEnvironment;
import software.amazon.awscdk.services.batch.Reason;
import software.amazon.awscdk.services.batch.RetryStrategy;
import software.amazon.awscdk.services.ec2.BlockDevice;
import software.amazon.awscdk.services.ec2.CfnSecurityGroup;
import software.amazon.awscdk.services.ec2.BlockDeviceVolume;
import software.amazon.awscdk.services.ec2.EbsDeviceOptions;
import software.amazon.awscdk.services.ec2.EbsDeviceVolumeType;
import software.amazon.awscdk.services.ec2.GatewayVpcEndpointAwsService;
import software.amazon.awscdk.services.ec2.GatewayVpcEndpointOptions;
import software.amazon.awscdk.services.ec2.InstanceType;
import software.amazon.awscdk.services.ec2.LaunchTemplate;
import software.amazon.awscdk.services.ec2.LaunchTemplateProps;
import software.amazon.awscdk.services.ec2.MultipartBody;
import software.amazon.awscdk.services.ec2.MultipartUserData;
import software.amazon.awscdk.services.ec2.SubnetConfiguration;
import software.amazon.awscdk.services.ec2.SubnetSelection;
import software.amazon.awscdk.services.ec2.SubnetType;
import software.amazon.awscdk.services.ec2.UserData;
import software.amazon.awscdk.services.ec2.Vpc;
import software.amazon.awscdk.services.ec2.VpcProps;
import software.amazon.awscdk.services.ecr.Repository;
import software.amazon.awscdk.services.ecr.RepositoryEncryption;
import software.amazon.awscdk.services.ecr.RepositoryProps;
import software.amazon.awscdk.services.ecr.TagMutability;
import software.amazon.awscdk.services.ecs.AwsLogDriverProps;
import software.amazon.awscdk.services.ecs.ContainerImage;
import software.amazon.awscdk.services.ecs.LogDriver;
import software.amazon.awscdk.services.iam.Role;
import software.amazon.awscdk.services.iam.RoleProps;
import software.amazon.awscdk.services.iam.ServicePrincipal;
import software.amazon.awscdk.services.logs.LogGroup;
import software.amazon.awscdk.services.secretsmanager.Secret;
import software.amazon.awscdk.services.secretsmanager.SecretProps;
import software.amazon.awscdk.services.secretsmanager.SecretStringGenerator;
import software.constructs.Construct;

/**
 * AWS Batch: the GPU compute environments (spot first, then on-demand) in a VPC of public subnets, the job queue,
 * the preprocess and train job definitions with their least-privilege roles, the images' repositories, and the
 * Hugging Face token the jobs get; and for sharded preprocessing's merge, a small on-demand CPU environment, its
 * queue and job definition.
 *
 * <p>CDK context: {@code gpuInstanceTypes} (comma-separated, from {@link GpuInstances}; default all of them) and
 * {@code trainGpus} (GPUs a training job asks for, default 1; its vCPUs and memory scale with it). Batch hands the
 * container exactly those GPUs, and the worker's {@code train} runs data-parallel over every GPU it sees (its
 * {@code --world-size} defaults to the visible count), so nothing else has to pass the count.
 */
final class Jobs extends Section {
    final Repository preprocessRepository;
    final Repository trainRepository;
    final Secret hfToken;
    final JobQueue queue;
    /** The jobs' log group (streams {stage}/default/{task id}); the status function reads the running jobs' lines. */
    final LogGroup jobLogs;
    final EcsJobDefinition preprocess;
    final EcsJobDefinition train;
    final JobQueue mergeQueue;
    final EcsJobDefinition merge;
    /** GPUs, vCPUs and GiB of memory of one training job (context trainGpus). */
    final int trainGpus;

    /** The merge's job: it only moves files (unzip, rezip, hash), so a few cores; memory for zip buffers. */
    static final int MERGE_VCPUS = 4;
    static final int MERGE_MEMORY_GIB = 15;
    /** Room for every shard's dataset and the merged one at once. */
    static final int MERGE_DISK_GIB = 500;
    static final List<String> MERGE_INSTANCE_TYPES = List.of("m6i.2xlarge", "m6i.4xlarge", "m7i.2xlarge",
            "m7i.4xlarge");

    Jobs(Construct scope, Storage storage, Number maxVcpus, String imageTag) {
        super(scope, "Jobs");
        hfToken = new Secret(this, "HuggingFaceToken", SecretProps.builder()
                .description("Hugging Face token the Batch jobs get as HF_TOKEN (DINOv3 is gated): "
                        + "put {\"token\":\"hf_...\"}")
                .generateSecretString(SecretStringGenerator.builder()
                        .secretStringTemplate("{\"token\":\"\"}").generateStringKey("unused").build())
                .build());
        preprocessRepository = repository("PreprocessRepository");
        trainRepository = repository("TrainRepository");

        // Public subnets only: no NAT gateway to pay for; instances reach ECR, S3 (through the gateway endpoint)
        // and Hugging Face directly, and accept no inbound traffic (the compute environments' security group).
        Vpc vpc = new Vpc(this, "BatchVpc", VpcProps.builder()
                .maxAzs(3)
                .natGateways(0)
                .subnetConfiguration(List.of(SubnetConfiguration.builder().name("public")
                        .subnetType(SubnetType.PUBLIC).cidrMask(20).build()))
                .gatewayEndpoints(Map.of("S3", GatewayVpcEndpointOptions.builder()
                        .service(GatewayVpcEndpointAwsService.S3).build()))
                .build());

        // Room for the image (CUDA + torch) and the cached base weights; IMDSv2 with one hop keeps containers
        // (which fetch user-given URLs) away from the instance's credentials.
        LaunchTemplate template = launchTemplate("GpuLaunchTemplate", 300);

        List<GpuInstances.Type> gpuTypes = GpuInstances.select(contextText("gpuInstanceTypes"));
        trainGpus = GpuInstances.trainGpus(contextText("trainGpus"), gpuTypes);
        List<InstanceType> types = gpuTypes.stream().map(t -> new InstanceType(t.name())).toList();
        ManagedEc2EcsComputeEnvironment spot = computeEnvironment("SpotGpuEnvironment", true, vpc, template,
                types, maxVcpus);
        ManagedEc2EcsComputeEnvironment onDemand = computeEnvironment("OnDemandGpuEnvironment", false, vpc,
                template, types, maxVcpus);

        queue = new JobQueue(this, "GpuJobQueue", JobQueueProps.builder()
                .priority(1)
                .computeEnvironments(List.of(
                        OrderedComputeEnvironment.builder().computeEnvironment(spot).order(1).build(),
                        OrderedComputeEnvironment.builder().computeEnvironment(onDemand).order(2).build()))
                // A job no instance type can hold, or one waiting hours for GPU capacity (no quota), is cancelled
                // rather than left RUNNABLE until the state machine's own timeout: its stage then fails with a reason.
                .jobStateTimeLimitActions(List.of(
                        stuck(JobStateTimeLimitActionsReason.JOB_RESOURCE_REQUIREMENT, Duration.minutes(10)),
                        stuck(JobStateTimeLimitActionsReason.INSUFFICIENT_INSTANCE_CAPACITY, Duration.hours(6))))
                .build());

        jobLogs = logGroup("BatchJobLogs");

        Role preprocessRole = jobRole("PreprocessJobRole");
        // Reads the upload (or the copy of an https archive that Prepare staged) and Prepare's record of it
        // (--input-record); writes the dataset zip and its report.
        allow(preprocessRole, storage.uploads, List.of("s3:GetObject"), "*");
        // A shard (an array child) reads the shard plan and writes its own dataset and report under shards/.
        allow(preprocessRole, storage.requests, List.of("s3:GetObject"), "requests/*/input.zip",
                "requests/*/input.json", "requests/*/shard-plan.json");
        allow(preprocessRole, storage.requests, List.of("s3:PutObject", "s3:AbortMultipartUpload"),
                "datasets/*", "requests/*/preprocess.json", "requests/*/shards/*");
        listBucket(preprocessRole, storage.requests, storage.uploads);

        Role trainRole = jobRole("TrainJobRole");
        // Reads the dataset (made by preprocess, or the user's preprocessed upload, or its staged copy, with
        // Prepare's record of it: --dataset-record); writes the adapter and its report.
        allow(trainRole, storage.requests, List.of("s3:GetObject"), "datasets/*", "requests/*/input.zip",
                "requests/*/input.json");
        allow(trainRole, storage.uploads, List.of("s3:GetObject"), "*");
        allow(trainRole, storage.requests, List.of("s3:PutObject", "s3:AbortMultipartUpload"),
                "requests/*/adapters/*");
        listBucket(trainRole, storage.requests, storage.uploads);

        storage.allowReadingExtraDataBuckets(preprocessRole);
        storage.allowReadingExtraDataBuckets(trainRole);

        preprocess = jobDefinition("PreprocessJobDefinition", "preprocess", preprocessRepository, imageTag,
                preprocessRole, jobLogs, Trellis2Stack.JOB_GPUS);
        train = jobDefinition("TrainJobDefinition", "train", trainRepository, imageTag, trainRole, jobLogs,
                trainGpus);

        // The merge of a sharded preprocessing: reads the plan and every shard's dataset and report, writes the one
        // dataset and the request's preprocess report.
        Role mergeRole = jobRole("MergeJobRole");
        allow(mergeRole, storage.requests, List.of("s3:GetObject"), "requests/*/shard-plan.json",
                "requests/*/shards/*");
        allow(mergeRole, storage.requests, List.of("s3:PutObject", "s3:AbortMultipartUpload"),
                "datasets/*", "requests/*/preprocess.json");
        listBucket(mergeRole, storage.requests);
        // On demand: a merge is minutes of copying, not worth a reclaim; its disk holds the shards and the result.
        LaunchTemplate mergeTemplate = launchTemplate("MergeLaunchTemplate", MERGE_DISK_GIB);
        ManagedEc2EcsComputeEnvironment cpu = new ManagedEc2EcsComputeEnvironment(this, "MergeCpuEnvironment",
                ManagedEc2EcsComputeEnvironmentProps.builder()
                        .vpc(vpc)
                        .vpcSubnets(SubnetSelection.builder().subnetType(SubnetType.PUBLIC).build())
                        .spot(false)
                        .allocationStrategy(AllocationStrategy.BEST_FIT_PROGRESSIVE)
                        .instanceTypes(MERGE_INSTANCE_TYPES.stream().map(InstanceType::new).toList())
                        .useOptimalInstanceClasses(false)
                        .images(List.of(EcsMachineImage.builder().imageType(EcsMachineImageType.ECS_AL2023).build()))
                        .launchTemplate(mergeTemplate)
                        .minvCpus(0)
                        .maxvCpus(8 * MERGE_VCPUS)
                        .updateToLatestImageVersion(true)
                        .build());
        mergeQueue = new JobQueue(this, "MergeJobQueue", JobQueueProps.builder()
                .priority(1)
                .computeEnvironments(List.of(
                        OrderedComputeEnvironment.builder().computeEnvironment(cpu).order(1).build()))
                .jobStateTimeLimitActions(List.of(
                        stuck(JobStateTimeLimitActionsReason.JOB_RESOURCE_REQUIREMENT, Duration.minutes(10)),
                        stuck(JobStateTimeLimitActionsReason.INSUFFICIENT_INSTANCE_CAPACITY, Duration.hours(2))))
                .build());
        merge = jobDefinition("MergeJobDefinition", "merge", preprocessRepository, imageTag, mergeRole, jobLogs, 0);
    }

    private String contextText(String key) {
        Object v = getNode().tryGetContext(key);
        return v == null ? null : v.toString();
    }

    /**
     * Retries what the infrastructure did (spot reclaim, host failure, container start or pull), never the
     * worker's own failures: exit code 2 (the input is at fault) and any other exit end the job. Batch allows 5.
     */
    static List<RetryStrategy> retryStrategies() {
        return List.of(
                RetryStrategy.of(Action.EXIT, Reason.custom(CustomReason.builder()
                        .onExitCode(Trellis2Stack.INPUT_ERROR_EXIT_CODE).build())),
                RetryStrategy.of(Action.RETRY, Reason.SPOT_INSTANCE_RECLAIMED),
                RetryStrategy.of(Action.RETRY, Reason.custom(CustomReason.builder().onReason("Cannot*").build())),
                RetryStrategy.of(Action.RETRY, Reason.custom(CustomReason.builder()
                        .onReason("ResourceInitializationError*").build())),
                RetryStrategy.of(Action.EXIT, Reason.custom(CustomReason.builder().onExitCode("*").build())));
    }

    private Repository repository(String id) {
        return new Repository(this, id, RepositoryProps.builder()
                .imageScanOnPush(true)
                // "latest" is re-pushed on every release.
                .imageTagMutability(TagMutability.MUTABLE)
                .encryption(RepositoryEncryption.AES_256)
                .lifecycleRules(List.of(software.amazon.awscdk.services.ecr.LifecycleRule.builder()
                        .description("keep the 10 newest images").maxImageCount(10).build()))
                .removalPolicy(RemovalPolicy.RETAIN)
                .build());
    }

    private static JobStateTimeLimitAction stuck(JobStateTimeLimitActionsReason reason, Duration after) {
        return JobStateTimeLimitAction.builder().action(JobStateTimeLimitActionsAction.CANCEL)
                .state(JobStateTimeLimitActionsState.RUNNABLE).reason(reason).maxTime(after).build();
    }

    /** Batch merges launch-template user data only in MIME multipart form. */
    /** An encrypted gp3 root disk of this size; IMDSv2 with one hop keeps containers away from the instance's role. */
    private LaunchTemplate launchTemplate(String id, int diskGib) {
        return new LaunchTemplate(this, id, LaunchTemplateProps.builder()
                .blockDevices(List.of(BlockDevice.builder().deviceName("/dev/xvda")
                        .volume(BlockDeviceVolume.ebs(diskGib, EbsDeviceOptions.builder()
                                .volumeType(EbsDeviceVolumeType.GP3).encrypted(true).deleteOnTermination(true)
                                .build()))
                        .build()))
                .requireImdsv2(true)
                .httpPutResponseHopLimit(1)
                .userData(cacheDirectoryUserData())
                .build());
    }

    private static MultipartUserData cacheDirectoryUserData() {
        UserData shell = UserData.forLinux();
        int uid = Trellis2Stack.CONTAINER_UID;
        shell.addCommands("mkdir -p " + Trellis2Stack.CACHE_HOST_PATH,
                "chown " + uid + ":" + uid + " " + Trellis2Stack.CACHE_HOST_PATH);
        MultipartUserData data = new MultipartUserData();
        data.addUserDataPart(shell, MultipartBody.SHELL_SCRIPT, true);
        return data;
    }

    private ManagedEc2EcsComputeEnvironment computeEnvironment(String id, boolean spot, Vpc vpc,
            LaunchTemplate template, List<InstanceType> types, Number maxVcpus) {
        ManagedEc2EcsComputeEnvironment environment = new ManagedEc2EcsComputeEnvironment(this, id,
                ManagedEc2EcsComputeEnvironmentProps.builder()
                        .vpc(vpc)
                        .vpcSubnets(SubnetSelection.builder().subnetType(SubnetType.PUBLIC).build())
                        .spot(spot)
                        .allocationStrategy(spot ? AllocationStrategy.SPOT_PRICE_CAPACITY_OPTIMIZED
                                : AllocationStrategy.BEST_FIT_PROGRESSIVE)
                        .instanceTypes(types)
                        .useOptimalInstanceClasses(false)
                        .images(List.of(EcsMachineImage.builder()
                                .imageType(EcsMachineImageType.ECS_AL2023_NVIDIA).build()))
                        .launchTemplate(template)
                        .minvCpus(0)
                        .maxvCpus(maxVcpus)
                        .updateToLatestImageVersion(true)
                        .build());
        // The CDK describes the group by its construct path, and CloudFormation replaces a group whose description
        // changes: it keeps the path it had before the stack had sections, so a deployed stack keeps its groups.
        CfnSecurityGroup group = (CfnSecurityGroup) environment.getNode().findChild("SecurityGroup").getNode()
                .getDefaultChild();
        group.addPropertyOverride("GroupDescription", Stack.of(this).getNode().getId() + "/" + id + "/SecurityGroup");
        return environment;
    }

    private Role jobRole(String id) {
        return new Role(this, id, RoleProps.builder()
                .assumedBy(new ServicePrincipal("ecs-tasks.amazonaws.com")).build());
    }

    /** @param gpus 0: a CPU job (the merge), sized by the MERGE_ constants; else that many GPUs and their share */
    private EcsJobDefinition jobDefinition(String id, String stage, Repository repo, String imageTag, Role jobRole,
            LogGroup logs, int gpus) {
        Map<String, String> env = new LinkedHashMap<>();
        env.put("AWS_DEFAULT_REGION", Aws.REGION);
        // Base weights and per-object preprocessing results survive on the instance between jobs.
        env.put("XDG_CACHE_HOME", "/cache");
        env.put("HF_HOME", "/cache/huggingface");
        EcsEc2ContainerDefinitionProps.Builder props = EcsEc2ContainerDefinitionProps.builder()
                .cpu(gpus == 0 ? MERGE_VCPUS : Trellis2Stack.JOB_VCPUS * gpus)
                .memory(Size.gibibytes(gpus == 0 ? MERGE_MEMORY_GIB : Trellis2Stack.JOB_MEMORY_GIB * gpus));
        if (gpus > 0) {
            props.gpu(gpus);
        }
        EcsEc2ContainerDefinition container = new EcsEc2ContainerDefinition(this, id + "Container",
                props
                        .image(ContainerImage.fromEcrRepository(repo, imageTag))
                        .jobRole(jobRole)
                        .environment(env)
                        .secrets(Map.of("HF_TOKEN",
                                software.amazon.awscdk.services.batch.Secret.fromSecretsManager(hfToken, "token")))
                        .volumes(List.of(EcsVolume.host(HostVolumeOptions.builder().name("cache")
                                .hostPath(Trellis2Stack.CACHE_HOST_PATH).containerPath("/cache").build())))
                        // PyTorch data loading and Blender use shared memory beyond Docker's 64 MB default.
                        .linuxParameters(new LinuxParameters(this, id + "Linux", LinuxParametersProps.builder()
                                .sharedMemorySize(Size.gibibytes(8)).initProcessEnabled(true).build()))
                        .logging(LogDriver.awsLogs(AwsLogDriverProps.builder().logGroup(logs).streamPrefix(stage)
                                .build()))
                        .build());
        return new EcsJobDefinition(this, id, EcsJobDefinitionProps.builder()
                .container(container)
                .timeout(Trellis2Stack.JOB_ATTEMPT_TIMEOUT)
                .retryAttempts(3)
                .retryStrategies(retryStrategies())
                .propagateTags(true)
                .build());
    }
}
