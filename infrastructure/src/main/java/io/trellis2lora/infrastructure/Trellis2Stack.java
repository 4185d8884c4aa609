package io.trellis2lora.infrastructure;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeSet;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import software.amazon.awscdk.Annotations;
import software.amazon.awscdk.Aws;
import software.amazon.awscdk.CfnOutput;
import software.amazon.awscdk.CfnOutputProps;
import software.amazon.awscdk.CfnParameter;
import software.amazon.awscdk.CfnParameterProps;
import software.amazon.awscdk.Duration;
import software.amazon.awscdk.RemovalPolicy;
import software.amazon.awscdk.Size;
import software.amazon.awscdk.Stack;
import software.amazon.awscdk.StackProps;
import software.amazon.awscdk.services.apigateway.AccessLogFormat;
import software.amazon.awscdk.services.apigateway.ApiKey;
import software.amazon.awscdk.services.apigateway.ApiKeyProps;
import software.amazon.awscdk.services.apigateway.EndpointType;
import software.amazon.awscdk.services.apigateway.LambdaIntegration;
import software.amazon.awscdk.services.apigateway.LogGroupLogDestination;
import software.amazon.awscdk.services.apigateway.MethodLoggingLevel;
import software.amazon.awscdk.services.apigateway.MethodOptions;
import software.amazon.awscdk.services.apigateway.QuotaSettings;
import software.amazon.awscdk.services.apigateway.Period;
import software.amazon.awscdk.services.apigateway.Resource;
import software.amazon.awscdk.services.apigateway.RestApi;
import software.amazon.awscdk.services.apigateway.RestApiProps;
import software.amazon.awscdk.services.apigateway.StageOptions;
import software.amazon.awscdk.services.apigateway.ThrottleSettings;
import software.amazon.awscdk.services.apigateway.UsagePlan;
import software.amazon.awscdk.services.apigateway.UsagePlanPerApiStage;
import software.amazon.awscdk.services.apigateway.UsagePlanProps;
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
import software.amazon.awscdk.services.batch.JobStateTimeLimitAction;
import software.amazon.awscdk.services.batch.JobStateTimeLimitActionsAction;
import software.amazon.awscdk.services.batch.JobStateTimeLimitActionsReason;
import software.amazon.awscdk.services.batch.JobStateTimeLimitActionsState;
import software.amazon.awscdk.services.batch.JobQueueProps;
import software.amazon.awscdk.services.batch.LinuxParameters;
import software.amazon.awscdk.services.batch.LinuxParametersProps;
import software.amazon.awscdk.services.batch.ManagedEc2EcsComputeEnvironment;
import software.amazon.awscdk.services.batch.ManagedEc2EcsComputeEnvironmentProps;
import software.amazon.awscdk.services.batch.OrderedComputeEnvironment;
import software.amazon.awscdk.services.batch.Reason;
import software.amazon.awscdk.services.batch.RetryStrategy;
import software.amazon.awscdk.services.cloudwatch.Alarm;
import software.amazon.awscdk.services.cloudwatch.AlarmProps;
import software.amazon.awscdk.services.cloudwatch.ComparisonOperator;
import software.amazon.awscdk.services.cloudwatch.IMetric;
import software.amazon.awscdk.services.cloudwatch.MetricOptions;
import software.amazon.awscdk.services.cloudwatch.TreatMissingData;
import software.amazon.awscdk.services.cloudwatch.actions.SnsAction;
import software.amazon.awscdk.services.ec2.BlockDevice;
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
import software.amazon.awscdk.services.ec2.UserData;
import software.amazon.awscdk.services.ec2.SubnetConfiguration;
import software.amazon.awscdk.services.ec2.SubnetSelection;
import software.amazon.awscdk.services.ec2.SubnetType;
import software.amazon.awscdk.services.ec2.Vpc;
import software.amazon.awscdk.services.ec2.VpcProps;
import software.amazon.awscdk.services.ecr.Repository;
import software.amazon.awscdk.services.ecr.RepositoryEncryption;
import software.amazon.awscdk.services.ecr.RepositoryProps;
import software.amazon.awscdk.services.ecr.TagMutability;
import software.amazon.awscdk.services.ecs.AwsLogDriverProps;
import software.amazon.awscdk.services.ecs.ContainerImage;
import software.amazon.awscdk.services.ecs.LogDriver;
import software.amazon.awscdk.services.iam.Effect;
import software.amazon.awscdk.services.iam.IGrantable;
import software.amazon.awscdk.services.iam.PolicyStatement;
import software.amazon.awscdk.services.iam.PolicyStatementProps;
import software.amazon.awscdk.services.iam.Role;
import software.amazon.awscdk.services.iam.RoleProps;
import software.amazon.awscdk.services.iam.ServicePrincipal;
import software.amazon.awscdk.services.lambda.Architecture;
import software.amazon.awscdk.services.lambda.Code;
import software.amazon.awscdk.services.lambda.Function;
import software.amazon.awscdk.services.lambda.FunctionProps;
import software.amazon.awscdk.services.lambda.Runtime;
import software.amazon.awscdk.services.lambda.Tracing;
import software.amazon.awscdk.services.lambda.eventsources.SqsEventSource;
import software.amazon.awscdk.services.lambda.eventsources.SqsEventSourceProps;
import software.amazon.awscdk.services.logs.LogGroup;
import software.amazon.awscdk.services.logs.LogGroupProps;
import software.amazon.awscdk.services.logs.RetentionDays;
import software.amazon.awscdk.services.s3.BlockPublicAccess;
import software.amazon.awscdk.services.s3.Bucket;
import software.amazon.awscdk.services.s3.BucketEncryption;
import software.amazon.awscdk.services.s3.BucketProps;
import software.amazon.awscdk.services.s3.EventType;
import software.amazon.awscdk.services.s3.IBucket;
import software.amazon.awscdk.services.s3.LifecycleRule;
import software.amazon.awscdk.services.s3.NotificationKeyFilter;
import software.amazon.awscdk.services.s3.ObjectOwnership;
import software.amazon.awscdk.services.s3.notifications.SqsDestination;
import software.amazon.awscdk.services.secretsmanager.Secret;
import software.amazon.awscdk.services.secretsmanager.SecretProps;
import software.amazon.awscdk.services.secretsmanager.SecretStringGenerator;
import software.amazon.awscdk.services.sns.Topic;
import software.amazon.awscdk.services.sns.TopicProps;
import software.amazon.awscdk.services.sqs.DeadLetterQueue;
import software.amazon.awscdk.services.sqs.IQueue;
import software.amazon.awscdk.services.sqs.Queue;
import software.amazon.awscdk.services.sqs.QueueEncryption;
import software.amazon.awscdk.services.sqs.QueueProps;
import software.amazon.awscdk.services.stepfunctions.CfnStateMachine;
import software.amazon.awscdk.services.stepfunctions.DefinitionBody;
import software.amazon.awscdk.services.stepfunctions.LogLevel;
import software.amazon.awscdk.services.stepfunctions.LogOptions;
import software.amazon.awscdk.services.stepfunctions.StateMachine;
import software.amazon.awscdk.services.stepfunctions.StateMachineProps;
import software.constructs.Construct;

/**
 * Everything the service runs on, in one stack: storage, queues, the nine Lambda functions, the state machine from
 * step-functions/ with its placeholders filled, the Batch GPU environments and job definitions, the images'
 * repositories, the REST API with API keys, least-privilege roles, log groups and alarms.
 */
public final class Trellis2Stack extends Stack {
    /** What the stack deploys: the Lambda packages and the state machine definition. */
    public record Sources(FunctionCode code, Path stateMachineFile) {
    }

    /** Where each Lambda function's package comes from. */
    public interface FunctionCode {
        Code of(Construct scope, String function);

        /**
         * The build's own output, functions/NAME/target/function.zip (`mvn -DskipTests install` makes them); the CDK
         * uploads them as assets on deploy.
         */
        static FunctionCode fromBuildOutput(Path functionsDir) {
            return (scope, name) -> {
                Path zip = functionsDir.resolve(name).resolve("target").resolve("function.zip");
                if (!Files.isRegularFile(zip)) {
                    throw new IllegalStateException(zip + " is missing: build the Lambda packages first "
                            + "(mvn -B -DskipTests install at the repository root)");
                }
                return Code.fromAsset(zip.toAbsolutePath().toString());
            };
        }

        /** Packages a release pipeline already uploaded: s3://BUCKET/PREFIXNAME/function.zip. */
        static FunctionCode fromBucket(String bucketName, String prefix) {
            return (scope, name) -> {
                IBucket bucket = (IBucket) scope.getNode().tryFindChild("FunctionPackages");
                if (bucket == null) {
                    bucket = Bucket.fromBucketName(scope, "FunctionPackages", bucketName);
                }
                return Code.fromBucket(bucket, prefix + name + "/function.zip");
            };
        }
    }

    /** The Lambda modules under functions/, each leaving target/function.zip. */
    public static final List<String> FUNCTIONS = List.of("submit", "estimate", "status", "result", "cancel",
            "prepare", "finalize", "upload-trigger", "webhook");

    /** Quarkus Amazon Lambda's entry point; each module has exactly one handler. */
    public static final String QUARKUS_HANDLER = "io.quarkus.amazon.lambda.runtime.QuarkusStreamHandler::handleRequest";

    /** Worker exit code for "the input is at fault": never retried. */
    public static final String INPUT_ERROR_EXIT_CODE = "2";

    /** What the jobs get on each attempt; the ASL's per-attempt timeout matches. */
    public static final Duration JOB_ATTEMPT_TIMEOUT = Duration.hours(12);

    /** Both jobs ask for this; every instance type in {@link GpuInstances} holds one. */
    public static final int JOB_VCPUS = 8;
    public static final int JOB_MEMORY_GIB = 56;
    public static final int JOB_GPUS = 1;

    private static final RetentionDays LOG_RETENTION = RetentionDays.ONE_MONTH;

    /** Where an upload starts a request by itself (functions/upload-trigger). */
    public static final String UPLOAD_PREFIX = "uploads/";

    public static final String CACHE_HOST_PATH = "/var/lib/trellis2-cache";

    private final Bucket requestsBucket;
    private final Bucket uploadsBucket;
    private final Queue uploadEvents;
    private final Queue webhooks;
    private final Map<String, Function> functions = new LinkedHashMap<>();
    private StateMachine stateMachine;
    private JobQueue jobQueue;
    private EcsJobDefinition preprocessJob;
    private EcsJobDefinition trainJob;
    private final Sources sources;

    public Trellis2Stack(Construct scope, String id, StackProps props, Sources sources) {
        super(scope, id, props);
        this.sources = sources;

        CfnParameter maxVcpus = new CfnParameter(this, "MaxVCpus", CfnParameterProps.builder().type("Number")
                .defaultValue(192).minValue(JOB_VCPUS)
                .description("Most vCPUs each GPU compute environment (spot, on-demand) may run at once; "
                        + JOB_VCPUS + " per job").build());
        CfnParameter imageTag = new CfnParameter(this, "ImageTag", CfnParameterProps.builder().type("String")
                .defaultValue("latest").allowedPattern("[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
                .description("Tag of the preprocess and train images in their ECR repositories").build());
        CfnParameter baseModel = new CfnParameter(this, "BaseModel", CfnParameterProps.builder().type("String")
                .defaultValue("microsoft/TRELLIS.2-4B").minLength(1)
                .description("The worker's --base: a Hugging Face repo id").build());
        CfnParameter uploadDays = days("UploadRetentionDays", 7, "Days an upload (a zip and its request sidecar) is kept");
        CfnParameter datasetDays = days("DatasetRetentionDays", 30,
                "Days a preprocessed dataset is kept for reuse and download");
        CfnParameter requestDays = days("RequestRetentionDays", 90,
                "Days a request's files (adapters, reports, result.json) are kept");

        // Storage. The platform keeps requests/, datasets/ and staging/ in one bucket (core's StorageLayout);
        // uploads arrive in a bucket of their own, whose object-created events feed the upload queue.
        requestsBucket = bucket("RequestsBucket", List.of(
                expire("staging", "staging/", Duration.days(1)),
                expire("datasets", "datasets/", Duration.days(datasetDays.getValueAsNumber())),
                expire("requests", "requests/", Duration.days(requestDays.getValueAsNumber()))));
        uploadsBucket = bucket("UploadsBucket", List.of(
                expire("uploads", null, Duration.days(uploadDays.getValueAsNumber()))));

        uploadEvents = queueWithDeadLetters("UploadEvents", Duration.minutes(30));
        webhooks = queueWithDeadLetters("Webhooks", Duration.minutes(3));
        // uploads/NAME.zip starts a request (its sidecar uploads/NAME.json is the request body).
        uploadsBucket.addEventNotification(EventType.OBJECT_CREATED, new SqsDestination(uploadEvents),
                NotificationKeyFilter.builder().prefix(UPLOAD_PREFIX).suffix(".zip").build());

        Secret hfToken = new Secret(this, "HuggingFaceToken", SecretProps.builder()
                .description("Hugging Face token the Batch jobs get as HF_TOKEN (DINOv3 is gated): "
                        + "put {\"token\":\"hf_...\"}")
                .generateSecretString(SecretStringGenerator.builder()
                        .secretStringTemplate("{\"token\":\"\"}").generateStringKey("unused").build())
                .build());

        Repository preprocessRepo = repository("PreprocessRepository");
        Repository trainRepo = repository("TrainRepository");
        batch(maxVcpus, imageTag.getValueAsString(), hfToken, preprocessRepo, trainRepo);

        lambdas(baseModel.getValueAsString());
        workflow();
        // Not on prepare/finalize: the state machine already depends on them.
        for (String fn : List.of("submit", "status", "result", "cancel", "upload-trigger")) {
            functions.get(fn).addEnvironment("TRELLIS2_STATE_MACHINE_ARN", stateMachine.getStateMachineArn());
        }
        grantFunctionAccess();
        RestApi api = api();
        alarms();

        output("ApiUrl", api.getUrl(), "Base URL of the REST API");
        output("RequestsBucketName", requestsBucket.getBucketName(), "Requests, datasets and staging");
        output("UploadsBucketName", uploadsBucket.getBucketName(),
                "data_url objects; uploads/NAME.zip (after its sidecar uploads/NAME.json) starts a request");
        output("StateMachineArn", stateMachine.getStateMachineArn(), "One execution per request id");
        output("PreprocessRepositoryUri", preprocessRepo.getRepositoryUri(), "docker push target: preprocess");
        output("TrainRepositoryUri", trainRepo.getRepositoryUri(), "docker push target: train");
        output("HuggingFaceTokenSecretArn", hfToken.getSecretArn(), "Set the Hugging Face token here");
        output("JobQueueArn", jobQueue.getJobQueueArn(), "Batch job queue (spot first)");
    }

    // ---- storage and queues ----

    private CfnParameter days(String name, int fallback, String description) {
        return new CfnParameter(this, name, CfnParameterProps.builder().type("Number").defaultValue(fallback)
                .minValue(1).description(description).build());
    }

    private static LifecycleRule expire(String id, String prefix, Duration after) {
        LifecycleRule.Builder b = LifecycleRule.builder().id(id).expiration(after)
                .abortIncompleteMultipartUploadAfter(Duration.days(1));
        if (prefix != null) {
            b.prefix(prefix);
        }
        return b.build();
    }

    private Bucket bucket(String id, List<LifecycleRule> rules) {
        return new Bucket(this, id, BucketProps.builder()
                .encryption(BucketEncryption.S3_MANAGED)
                .blockPublicAccess(BlockPublicAccess.BLOCK_ALL)
                .enforceSsl(true)
                .objectOwnership(ObjectOwnership.BUCKET_OWNER_ENFORCED)
                .lifecycleRules(rules)
                .removalPolicy(RemovalPolicy.RETAIN)
                .build());
    }

    private Queue queueWithDeadLetters(String id, Duration visibility) {
        Queue dlq = new Queue(this, id + "DeadLetters", QueueProps.builder()
                .encryption(QueueEncryption.SQS_MANAGED).enforceSsl(true)
                .retentionPeriod(Duration.days(14)).build());
        return new Queue(this, id + "Queue", QueueProps.builder()
                .encryption(QueueEncryption.SQS_MANAGED).enforceSsl(true)
                .visibilityTimeout(visibility)
                .retentionPeriod(Duration.days(4))
                .deadLetterQueue(DeadLetterQueue.builder().queue(dlq).maxReceiveCount(5).build())
                .build());
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

    private LogGroup logGroup(String id) {
        return new LogGroup(this, id, LogGroupProps.builder().retention(LOG_RETENTION)
                .removalPolicy(RemovalPolicy.DESTROY).build());
    }

    // ---- AWS Batch ----

    private void batch(CfnParameter maxVcpus, String imageTag, Secret hfToken, Repository preprocessRepo,
            Repository trainRepo) {
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
        LaunchTemplate template = new LaunchTemplate(this, "GpuLaunchTemplate", LaunchTemplateProps.builder()
                .blockDevices(List.of(BlockDevice.builder().deviceName("/dev/xvda")
                        .volume(BlockDeviceVolume.ebs(300, EbsDeviceOptions.builder()
                                .volumeType(EbsDeviceVolumeType.GP3).encrypted(true).deleteOnTermination(true)
                                .build()))
                        .build()))
                .requireImdsv2(true)
                .httpPutResponseHopLimit(1)
                .userData(cacheDirectoryUserData())
                .build());

        List<InstanceType> types = GpuInstances.names().stream().map(InstanceType::new).toList();
        ManagedEc2EcsComputeEnvironment spot = computeEnvironment("SpotGpuEnvironment", true, vpc, template,
                types, maxVcpus);
        ManagedEc2EcsComputeEnvironment onDemand = computeEnvironment("OnDemandGpuEnvironment", false, vpc,
                template, types, maxVcpus);

        jobQueue = new JobQueue(this, "GpuJobQueue", JobQueueProps.builder()
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

        LogGroup jobLogs = logGroup("BatchJobLogs");

        Role preprocessRole = jobRole("PreprocessJobRole");
        // Reads the upload (or the copy of an https archive that submit staged); writes the dataset zip and its
        // report.
        allow(preprocessRole, uploadsBucket, List.of("s3:GetObject"), "*");
        allow(preprocessRole, requestsBucket, List.of("s3:GetObject"), "requests/*/input.zip");
        allow(preprocessRole, requestsBucket, List.of("s3:PutObject", "s3:AbortMultipartUpload"),
                "datasets/*", "requests/*/preprocess.json");
        listBucket(preprocessRole, requestsBucket, uploadsBucket);

        Role trainRole = jobRole("TrainJobRole");
        // Reads the dataset (made by preprocess, or the user's preprocessed upload, or its staged copy); writes
        // the adapter and its report.
        allow(trainRole, requestsBucket, List.of("s3:GetObject"), "datasets/*", "requests/*/input.zip");
        allow(trainRole, uploadsBucket, List.of("s3:GetObject"), "*");
        allow(trainRole, requestsBucket, List.of("s3:PutObject", "s3:AbortMultipartUpload"),
                "requests/*/adapters/*");
        listBucket(trainRole, requestsBucket, uploadsBucket);

        preprocessJob = jobDefinition("PreprocessJobDefinition", "preprocess", preprocessRepo, imageTag, hfToken,
                preprocessRole, jobLogs);
        trainJob = jobDefinition("TrainJobDefinition", "train", trainRepo, imageTag, hfToken, trainRole, jobLogs);
    }

    private static JobStateTimeLimitAction stuck(JobStateTimeLimitActionsReason reason, Duration after) {
        return JobStateTimeLimitAction.builder().action(JobStateTimeLimitActionsAction.CANCEL)
                .state(JobStateTimeLimitActionsState.RUNNABLE).reason(reason).maxTime(after).build();
    }

    /** The images run as this uid (USER in batch-containers/Dockerfile.*); it owns the host cache directory. */
    public static final int CONTAINER_UID = 1000;

    /** Batch merges launch-template user data only in MIME multipart form. */
    private static MultipartUserData cacheDirectoryUserData() {
        UserData shell = UserData.forLinux();
        shell.addCommands("mkdir -p " + CACHE_HOST_PATH,
                "chown " + CONTAINER_UID + ":" + CONTAINER_UID + " " + CACHE_HOST_PATH);
        MultipartUserData data = new MultipartUserData();
        data.addUserDataPart(shell, MultipartBody.SHELL_SCRIPT, true);
        return data;
    }

    private ManagedEc2EcsComputeEnvironment computeEnvironment(String id, boolean spot, Vpc vpc,
            LaunchTemplate template, List<InstanceType> types, CfnParameter maxVcpus) {
        return new ManagedEc2EcsComputeEnvironment(this, id, ManagedEc2EcsComputeEnvironmentProps.builder()
                .vpc(vpc)
                .vpcSubnets(SubnetSelection.builder().subnetType(SubnetType.PUBLIC).build())
                .spot(spot)
                .allocationStrategy(spot ? AllocationStrategy.SPOT_PRICE_CAPACITY_OPTIMIZED
                        : AllocationStrategy.BEST_FIT_PROGRESSIVE)
                .instanceTypes(types)
                .useOptimalInstanceClasses(false)
                .images(List.of(EcsMachineImage.builder().imageType(EcsMachineImageType.ECS_AL2023_NVIDIA).build()))
                .launchTemplate(template)
                .minvCpus(0)
                .maxvCpus(maxVcpus.getValueAsNumber())
                .updateToLatestImageVersion(true)
                .build());
    }

    private Role jobRole(String id) {
        return new Role(this, id, RoleProps.builder()
                .assumedBy(new ServicePrincipal("ecs-tasks.amazonaws.com")).build());
    }

    /**
     * Retries what the infrastructure did (spot reclaim, host failure, container start or pull), never the
     * worker's own failures: exit code 2 (the input is at fault) and any other exit end the job. Batch allows 5.
     */
    public static List<RetryStrategy> jobRetryStrategies() {
        return List.of(
                RetryStrategy.of(Action.EXIT, Reason.custom(CustomReason.builder()
                        .onExitCode(INPUT_ERROR_EXIT_CODE).build())),
                RetryStrategy.of(Action.RETRY, Reason.SPOT_INSTANCE_RECLAIMED),
                RetryStrategy.of(Action.RETRY, Reason.custom(CustomReason.builder().onReason("Cannot*").build())),
                RetryStrategy.of(Action.RETRY, Reason.custom(CustomReason.builder()
                        .onReason("ResourceInitializationError*").build())),
                RetryStrategy.of(Action.EXIT, Reason.custom(CustomReason.builder().onExitCode("*").build())));
    }

    private EcsJobDefinition jobDefinition(String id, String stage, Repository repo, String imageTag,
            Secret hfToken, Role jobRole, LogGroup logs) {
        Map<String, String> env = new LinkedHashMap<>();
        env.put("AWS_DEFAULT_REGION", Aws.REGION);
        // Base weights and per-object preprocessing results survive on the instance between jobs.
        env.put("XDG_CACHE_HOME", "/cache");
        env.put("HF_HOME", "/cache/huggingface");
        EcsEc2ContainerDefinition container = new EcsEc2ContainerDefinition(this, id + "Container",
                EcsEc2ContainerDefinitionProps.builder()
                        .image(ContainerImage.fromEcrRepository(repo, imageTag))
                        .cpu(JOB_VCPUS)
                        .memory(Size.gibibytes(JOB_MEMORY_GIB))
                        .gpu(JOB_GPUS)
                        .jobRole(jobRole)
                        .environment(env)
                        .secrets(Map.of("HF_TOKEN",
                                software.amazon.awscdk.services.batch.Secret.fromSecretsManager(hfToken, "token")))
                        .volumes(List.of(EcsVolume.host(HostVolumeOptions.builder().name("cache")
                                .hostPath(CACHE_HOST_PATH).containerPath("/cache").build())))
                        // PyTorch data loading and Blender use shared memory beyond Docker's 64 MB default.
                        .linuxParameters(new LinuxParameters(this, id + "Linux", LinuxParametersProps.builder()
                                .sharedMemorySize(Size.gibibytes(8)).initProcessEnabled(true).build()))
                        .logging(LogDriver.awsLogs(AwsLogDriverProps.builder().logGroup(logs).streamPrefix(stage)
                                .build()))
                        .build());
        return new EcsJobDefinition(this, id, EcsJobDefinitionProps.builder()
                .container(container)
                .timeout(JOB_ATTEMPT_TIMEOUT)
                .retryAttempts(3)
                .retryStrategies(jobRetryStrategies())
                .propagateTags(true)
                .build());
    }

    // ---- Lambda functions ----

    /** Memory and timeout per function, sized to its work; API functions stay under API Gateway's 29 s. */
    public record Sizing(int memoryMb, Duration timeout, Size ephemeralStorage) {
    }

    public static Map<String, Sizing> sizing() {
        Map<String, Sizing> m = new LinkedHashMap<>();
        Size tmp = Size.mebibytes(512);
        // submit/estimate read zip directories over ranged requests and may stage an https archive.
        m.put("submit", new Sizing(1024, Duration.seconds(29), Size.gibibytes(2)));
        m.put("estimate", new Sizing(1024, Duration.seconds(29), Size.gibibytes(2)));
        m.put("status", new Sizing(512, Duration.seconds(15), tmp));
        m.put("result", new Sizing(512, Duration.seconds(15), tmp));
        m.put("cancel", new Sizing(512, Duration.seconds(15), tmp));
        // The state machine gives Prepare 900 s and Finalize 300 s (describe_failure: 120 s).
        m.put("prepare", new Sizing(1536, Duration.seconds(840), Size.gibibytes(4)));
        m.put("finalize", new Sizing(1024, Duration.seconds(110), tmp));
        // Inspects the upload like submit does, without API Gateway's limit (an https archive may be staged).
        m.put("upload-trigger", new Sizing(1024, Duration.minutes(5), Size.gibibytes(2)));
        m.put("webhook", new Sizing(512, Duration.seconds(30), tmp));
        return m;
    }

    private void lambdas(String baseModel) {
        Map<String, Sizing> sizes = sizing();
        for (String name : FUNCTIONS) {
            String id = camel(name);
            LogGroup logs = logGroup(id + "FunctionLogs");
            Sizing s = sizes.get(name);
            Map<String, String> env = new LinkedHashMap<>();
            env.put("TRELLIS2_REQUESTS_BUCKET", requestsBucket.getBucketName());
            env.put("TRELLIS2_PRESIGN_SECONDS", "3600");
            env.put("TRELLIS2_BASE_MODEL", baseModel);
            // Quarkus reads the JVM options from here; tiered compilation level 1 starts Java faster.
            env.put("JAVA_TOOL_OPTIONS", "-XX:+TieredCompilation -XX:TieredStopAtLevel=1");
            Function fn = new Function(this, id + "Function", FunctionProps.builder()
                    .runtime(Runtime.JAVA_17)
                    .architecture(Architecture.X86_64)
                    .handler(QUARKUS_HANDLER)
                    .code(sources.code().of(this, name))
                    .memorySize(s.memoryMb())
                    .timeout(s.timeout())
                    .ephemeralStorageSize(s.ephemeralStorage())
                    .environment(env)
                    .logGroup(logs)
                    .tracing(Tracing.ACTIVE)
                    .description("trellis2-lora " + name)
                    .build());
            functions.put(name, fn);
        }
        functions.get("finalize").addEnvironment("TRELLIS2_WEBHOOK_QUEUE_URL", webhooks.getQueueUrl());
        functions.get("upload-trigger").addEventSource(new SqsEventSource(uploadEvents, SqsEventSourceProps.builder()
                .batchSize(1).reportBatchItemFailures(true).build()));
        // The webhook function pushes a failed delivery's visibility out itself (exponential backoff).
        functions.get("webhook").addEnvironment("TRELLIS2_WEBHOOK_QUEUE_URL", webhooks.getQueueUrl());
        functions.get("webhook").addEventSource(new SqsEventSource(webhooks, SqsEventSourceProps.builder()
                .batchSize(1).reportBatchItemFailures(true).build()));
    }

    private static String camel(String name) {
        StringBuilder b = new StringBuilder();
        for (String part : name.split("-")) {
            b.append(Character.toUpperCase(part.charAt(0))).append(part.substring(1));
        }
        return b.toString();
    }

    // ---- the state machine ----

    /** The ${...} placeholders in an ASL file, in order of name. */
    public static TreeSet<String> placeholders(String asl) {
        TreeSet<String> out = new TreeSet<>();
        Matcher m = Pattern.compile("\\$\\{([A-Za-z0-9_]+)}").matcher(asl);
        while (m.find()) {
            out.add(m.group(1));
        }
        return out;
    }

    private void workflow() {
        String asl;
        try {
            asl = Files.readString(sources.stateMachineFile());
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read the state machine " + sources.stateMachineFile(), e);
        }
        Map<String, String> values = new LinkedHashMap<>();
        values.put("PrepareFunctionArn", functions.get("prepare").getFunctionArn());
        values.put("FinalizeFunctionArn", functions.get("finalize").getFunctionArn());
        values.put("JobQueueArn", jobQueue.getJobQueueArn());
        values.put("PreprocessJobDefinitionArn", preprocessJob.getJobDefinitionArn());
        values.put("TrainJobDefinitionArn", trainJob.getJobDefinitionArn());
        values.put("RequestsBucket", requestsBucket.getBucketName());
        // Filled here rather than through DefinitionSubstitutions, so that CloudFormation leaves any other "${"
        // text in the definition (comments) alone.
        String filled = fill(asl, values);
        LogGroup logs = new LogGroup(this, "StateMachineLogs", LogGroupProps.builder()
                // Step Functions wants its log groups under /aws/vendedlogs/ to keep the resource policy small.
                .logGroupName("/aws/vendedlogs/states/" + getStackName() + "-trellis2-lora")
                .retention(LOG_RETENTION).removalPolicy(RemovalPolicy.DESTROY).build());
        stateMachine = new StateMachine(this, "TrainingStateMachine", StateMachineProps.builder()
                .definitionBody(DefinitionBody.fromString(filled))
                .logs(LogOptions.builder().destination(logs).level(LogLevel.ALL).includeExecutionData(true).build())
                .tracingEnabled(true)
                .build());
        // cfn-lint's E1029 reads any "${" in a string as a Fn::Sub variable; the ones left in the definition are
        // prose in Comment fields (every placeholder was filled above, or fill() would have failed).
        CfnStateMachine cfnStateMachine = (CfnStateMachine) stateMachine.getNode().getDefaultChild();
        cfnStateMachine.addMetadata("cfn-lint", Map.of("config", Map.of("ignore_checks", List.of("E1029"))));
        Annotations.of(cfnStateMachine).acknowledgeWarning("CloudFormation-Validate::E1029",
                "the remaining ${ text is prose in Comment fields; every placeholder is filled");

        // The definition is a file, so the grants the CDK would derive from task objects are written out here.
        for (String fn : List.of("prepare", "finalize")) {
            functions.get(fn).grantInvoke(stateMachine);
        }
        stateMachine.addToRolePolicy(statement(List.of("batch:SubmitJob"), List.of(jobQueue.getJobQueueArn(),
                preprocessJob.getJobDefinitionArn(), trainJob.getJobDefinitionArn())));
        // DescribeJobs has no resource-level permissions; TerminateJob is what .sync calls on a stopped execution.
        stateMachine.addToRolePolicy(statement(List.of("batch:DescribeJobs"), List.of("*")));
        stateMachine.addToRolePolicy(statement(List.of("batch:TerminateJob"),
                List.of(arn("batch", "job/*"))));
        stateMachine.addToRolePolicy(statement(List.of("events:PutTargets", "events:PutRule", "events:DescribeRule"),
                List.of(arn("events", "rule/StepFunctionsGetEventsForBatchJobsRule"))));
    }

    /** The ASL with every ${Name} placeholder replaced; a placeholder the stack has no value for is an error. */
    public static String fill(String asl, Map<String, String> values) {
        StringBuilder out = new StringBuilder();
        Matcher m = Pattern.compile("\\$\\{([A-Za-z0-9_]+)}").matcher(asl);
        while (m.find()) {
            String v = values.get(m.group(1));
            if (v == null) {
                throw new IllegalStateException("the state machine names ${" + m.group(1) + "}, which the stack does "
                        + "not fill (it fills " + values.keySet() + ")");
            }
            m.appendReplacement(out, Matcher.quoteReplacement(v));
        }
        m.appendTail(out);
        return out.toString();
    }

    private static String arn(String service, String resource) {
        return "arn:" + Aws.PARTITION + ":" + service + ":" + Aws.REGION + ":" + Aws.ACCOUNT_ID + ":" + resource;
    }

    private static PolicyStatement statement(List<String> actions, List<String> resources) {
        return new PolicyStatement(PolicyStatementProps.builder().effect(Effect.ALLOW).actions(actions)
                .resources(resources).build());
    }

    // ---- least privilege for the functions ----

    private void allow(IGrantable who, Bucket bucket, List<String> actions, String... keyPatterns) {
        List<String> resources = new ArrayList<>();
        for (String p : keyPatterns) {
            resources.add(bucket.arnForObjects(p));
        }
        who.getGrantPrincipal().addToPrincipalPolicy(statement(actions, resources));
    }

    /** Lets a missing key answer 404 rather than 403, which the code reads as "not there". */
    private void listBucket(IGrantable who, Bucket... buckets) {
        List<String> arns = new ArrayList<>();
        for (Bucket b : buckets) {
            arns.add(b.getBucketArn());
        }
        who.getGrantPrincipal().addToPrincipalPolicy(statement(List.of("s3:ListBucket"), arns));
    }

    private void grantFunctionAccess() {
        List<String> put = List.of("s3:PutObject", "s3:AbortMultipartUpload");
        List<String> get = List.of("s3:GetObject");
        Function submit = functions.get("submit");
        allow(submit, uploadsBucket, get, "*");
        allow(submit, requestsBucket, get, "requests/*");
        allow(submit, requestsBucket, put, "requests/*/request.json", "requests/*/input.zip");
        listBucket(submit, requestsBucket, uploadsBucket);
        stateMachine.grantStartExecution(submit);

        Function estimate = functions.get("estimate");
        allow(estimate, uploadsBucket, get, "*");
        allow(estimate, requestsBucket, List.of("s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload",
                "s3:DeleteObject"), "staging/*");
        listBucket(estimate, requestsBucket, uploadsBucket);

        Function status = functions.get("status");
        allow(status, requestsBucket, get, "requests/*");
        listBucket(status, requestsBucket);
        stateMachine.grantExecution(status, "states:DescribeExecution", "states:GetExecutionHistory");

        // result hands out presigned URLs, which carry the signer's rights: it can read, never write.
        Function result = functions.get("result");
        allow(result, requestsBucket, get, "requests/*", "datasets/*");
        // A preprocessed upload is its own dataset: the result links to it where it lies.
        allow(result, uploadsBucket, get, "*");
        listBucket(result, requestsBucket, uploadsBucket);
        stateMachine.grantExecution(result, "states:DescribeExecution");

        Function cancel = functions.get("cancel");
        allow(cancel, requestsBucket, get, "requests/*");
        listBucket(cancel, requestsBucket);
        stateMachine.grantExecution(cancel, "states:DescribeExecution", "states:StopExecution");

        Function prepare = functions.get("prepare");
        allow(prepare, uploadsBucket, get, "*");
        allow(prepare, requestsBucket, get, "requests/*", "datasets/*");
        listBucket(prepare, requestsBucket, uploadsBucket);

        Function finalize = functions.get("finalize");
        allow(finalize, requestsBucket, get, "requests/*", "datasets/*");
        allow(finalize, requestsBucket, put, "requests/*", "datasets/*/dataset.json");
        // A failed stage's error report is moved from adapters/ to failures/.
        allow(finalize, requestsBucket, List.of("s3:DeleteObject"), "requests/*/adapters/*");
        listBucket(finalize, requestsBucket);
        webhooks.grantSendMessages(finalize);

        Function trigger = functions.get("upload-trigger");
        allow(trigger, uploadsBucket, get, UPLOAD_PREFIX + "*");
        // A refused upload is reported beside it.
        allow(trigger, uploadsBucket, List.of("s3:PutObject"), UPLOAD_PREFIX + "*.error.json");
        allow(trigger, requestsBucket, get, "requests/*");
        allow(trigger, requestsBucket, put, "requests/*/request.json", "requests/*/input.zip");
        listBucket(trigger, requestsBucket, uploadsBucket);
        stateMachine.grantStartExecution(trigger);

        // webhook only consumes its queue (the event source grants that) and calls out over https.
    }

    // ---- API ----

    private RestApi api() {
        LogGroup access = logGroup("ApiAccessLogs");
        RestApi api = new RestApi(this, "Api", RestApiProps.builder()
                .description("TRELLIS.2 LoRA trainer")
                .endpointTypes(List.of(EndpointType.REGIONAL))
                .cloudWatchRole(true)
                .deployOptions(StageOptions.builder()
                        .stageName("v1")
                        .accessLogDestination(new LogGroupLogDestination(access))
                        .accessLogFormat(AccessLogFormat.jsonWithStandardFields())
                        .loggingLevel(MethodLoggingLevel.ERROR)
                        .metricsEnabled(true)
                        .tracingEnabled(true)
                        .throttlingRateLimit(20)
                        .throttlingBurstLimit(40)
                        .build())
                .defaultMethodOptions(MethodOptions.builder().apiKeyRequired(true).build())
                .build());

        Resource requests = api.getRoot().addResource("requests");
        requests.addMethod("POST", integration("submit"));
        api.getRoot().addResource("estimate").addMethod("POST", integration("estimate"));
        Resource one = requests.addResource("{request_id}");
        one.addMethod("GET", integration("result"));
        one.addResource("status").addMethod("GET", integration("status"));
        one.addResource("cancel").addMethod("PUT", integration("cancel"));

        ApiKey key = new ApiKey(this, "DefaultApiKey", ApiKeyProps.builder()
                .description("trellis2-lora default key").enabled(true).build());
        UsagePlan plan = new UsagePlan(this, "UsagePlan", UsagePlanProps.builder()
                .description("trellis2-lora: throttle and daily quota per key")
                .throttle(ThrottleSettings.builder().rateLimit(10).burstLimit(20).build())
                .quota(QuotaSettings.builder().limit(10000).period(Period.DAY).build())
                .apiStages(List.of(UsagePlanPerApiStage.builder().api(api).stage(api.getDeploymentStage()).build()))
                .build());
        plan.addApiKey(key);
        output("ApiKeyId", key.getKeyId(), "aws apigateway get-api-key --include-value --api-key <id>");
        return api;
    }

    private LambdaIntegration integration(String function) {
        return new LambdaIntegration(functions.get(function));
    }

    // ---- alarms ----

    private void alarms() {
        Topic topic = new Topic(this, "AlarmTopic", TopicProps.builder()
                .displayName("trellis2-lora alarms").enforceSsl(true).build());
        SnsAction notify = new SnsAction(topic);
        alarm("FailedExecutionsAlarm", stateMachine.metricFailed(period("Sum")),
                "A training execution failed (every stage failed, or nothing could run)", notify);
        alarm("TimedOutExecutionsAlarm", stateMachine.metricTimedOut(period("Sum")),
                "A training execution timed out", notify);
        for (Queue q : List.of(uploadEvents, webhooks)) {
            IQueue dlq = q.getDeadLetterQueue().getQueue();
            String id = q.getNode().getId().replace("Queue", "");
            alarm(id + "DeadLettersAlarm", dlq.metricApproximateNumberOfMessagesVisible(period("Maximum")),
                    "Messages reached the dead-letter queue of " + id, notify);
        }
        output("AlarmTopicArn", topic.getTopicArn(), "Subscribe to receive the alarms");
    }

    private static MetricOptions period(String statistic) {
        return MetricOptions.builder().period(Duration.minutes(5)).statistic(statistic).build();
    }

    private void alarm(String id, IMetric metric, String description, SnsAction notify) {
        Alarm a = new Alarm(this, id, AlarmProps.builder()
                .metric(metric)
                .threshold(0)
                .comparisonOperator(ComparisonOperator.GREATER_THAN_THRESHOLD)
                .evaluationPeriods(1)
                .treatMissingData(TreatMissingData.NOT_BREACHING)
                .alarmDescription(description)
                .build());
        a.addAlarmAction(notify);
    }

    private void output(String id, String value, String description) {
        new CfnOutput(this, id, CfnOutputProps.builder().value(value).description(description).build());
    }
}
