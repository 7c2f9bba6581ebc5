// Command daprd is Dapr's sidecar with only the components AirDisplay uses: the Redis state store (actor
// state), the Redis pub/sub (banner events), the local secret stores and mDNS name resolution.
//
// Dapr's own cmd/daprd registers every stable component through build tags, and some of their modules
// (the Pulsar client fork among them) are not served by the Go module proxy these machines reach; it also
// takes several times longer to download and compile. The runtime itself is Dapr's, unchanged: this file
// only chooses the components and starts it, as Dapr's cmd/daprd/app does.
package main

import (
	"context"
	"fmt"
	"os"

	"go.opencensus.io/stats/view"

	nrmdns "github.com/dapr/components-contrib/nameresolution/mdns"
	pubsubredis "github.com/dapr/components-contrib/pubsub/redis"
	secretenv "github.com/dapr/components-contrib/secretstores/local/env"
	secretfile "github.com/dapr/components-contrib/secretstores/local/file"
	stateredis "github.com/dapr/components-contrib/state/redis"
	"github.com/dapr/dapr/cmd/daprd/options"
	"github.com/dapr/dapr/pkg/buildinfo"
	nrloader "github.com/dapr/dapr/pkg/components/nameresolution"
	pubsubloader "github.com/dapr/dapr/pkg/components/pubsub"
	secretloader "github.com/dapr/dapr/pkg/components/secretstores"
	stateloader "github.com/dapr/dapr/pkg/components/state"
	"github.com/dapr/dapr/pkg/healthz"
	"github.com/dapr/dapr/pkg/metrics"
	"github.com/dapr/dapr/pkg/modes"
	"github.com/dapr/dapr/pkg/runtime"
	"github.com/dapr/dapr/pkg/runtime/registry"
	"github.com/dapr/dapr/pkg/security"
	"github.com/dapr/kit/concurrency"
	"github.com/dapr/kit/logger"
	"github.com/dapr/kit/signals"
)

var log = logger.NewLogger("dapr.runtime")

func registerComponents() {
	contrib := logger.NewLogger("dapr.contrib")
	stateloader.DefaultRegistry.Logger = contrib
	pubsubloader.DefaultRegistry.Logger = contrib
	secretloader.DefaultRegistry.Logger = contrib
	nrloader.DefaultRegistry.Logger = contrib
	stateloader.DefaultRegistry.RegisterComponent(stateredis.NewRedisStateStore, "redis")
	pubsubloader.DefaultRegistry.RegisterComponent(pubsubredis.NewRedisStreams, "redis")
	secretloader.DefaultRegistry.RegisterComponent(secretenv.NewEnvSecretStore, "local.env")
	secretloader.DefaultRegistry.RegisterComponent(secretfile.NewLocalSecretStore, "local.file")
	nrloader.DefaultRegistry.RegisterComponent(nrmdns.NewResolver, "mdns")
}

func main() {
	opts, err := options.New(os.Args[1:])
	if err != nil {
		log.Fatalf("Failed to parse flags: %v", err)
	}
	if opts.RuntimeVersion {
		fmt.Println(buildinfo.Version()) //nolint:forbidigo
		return
	}
	opts.Logger.SetAppID(opts.AppID)
	if err := logger.ApplyOptionsToLoggers(&opts.Logger); err != nil {
		log.Fatal(err)
	}
	log.Infof("Starting Dapr Runtime (AirDisplay's build: Redis state and pub/sub) -- version %s", buildinfo.Version())
	registerComponents()
	if err := run(signals.Context(), opts); err != nil {
		log.Fatalf("Fatal error from runtime: %s", err)
	}
	log.Info("Daprd shutdown gracefully")
}

func run(ctx context.Context, opts *options.Options) error {
	health := healthz.New()
	provider, err := security.New(ctx, security.Options{
		SentryAddress:           opts.SentryAddress,
		ControlPlaneTrustDomain: opts.ControlPlaneTrustDomain,
		ControlPlaneNamespace:   opts.ControlPlaneNamespace,
		TrustAnchors:            opts.TrustAnchors,
		AppID:                   opts.AppID,
		MTLSEnabled:             opts.EnableMTLS,
		Mode:                    modes.DaprMode(opts.Mode),
		Healthz:                 health,
		JwtAudiences:            opts.SentryRequestJwtAudiences,
	})
	if err != nil {
		return err
	}
	startRuntime := func(ctx context.Context) error {
		sec, err := provider.Handler(ctx)
		if err != nil {
			return err
		}
		rt, err := runtime.FromConfig(ctx, runtimeConfig(opts, sec, health))
		if err != nil {
			return err
		}
		return rt.Run(ctx)
	}
	return concurrency.NewRunnerManager(provider.Run, startRuntime).Run(ctx)
}

func runtimeConfig(opts *options.Options, sec security.Handler, health healthz.Healthz) *runtime.Config {
	return &runtime.Config{
		AppID:                         opts.AppID,
		ActorsService:                 opts.ActorsService,
		ActorsDisseminationTimeout:    opts.ActorsDisseminationTimeout,
		HotReloadReconcileInterval:    opts.HotReloadReconcileInterval,
		RemindersService:              opts.RemindersService,
		SchedulerAddress:              opts.SchedulerAddress,
		SchedulerStreams:              opts.SchedulerJobStreams,
		AllowedOrigins:                opts.AllowedOrigins,
		ResourcesPath:                 opts.ResourcesPath,
		ControlPlaneAddress:           opts.ControlPlaneAddress,
		AppProtocol:                   opts.AppProtocol,
		Mode:                          opts.Mode,
		DaprHTTPPort:                  opts.DaprHTTPPort,
		DaprInternalGRPCPort:          opts.DaprInternalGRPCPort,
		DaprInternalGRPCListenAddress: opts.DaprInternalGRPCListenAddress,
		DaprAPIGRPCPort:               opts.DaprAPIGRPCPort,
		DaprAPIListenAddresses:        opts.DaprAPIListenAddresses,
		DaprPublicPort:                opts.DaprPublicPort,
		DaprPublicListenAddress:       opts.DaprPublicListenAddress,
		ApplicationPort:               opts.AppPort,
		ProfilePort:                   opts.ProfilePort,
		EnableProfiling:               opts.EnableProfiling,
		AppMaxConcurrency:             opts.AppMaxConcurrency,
		EnableMTLS:                    opts.EnableMTLS,
		SentryAddress:                 opts.SentryAddress,
		MaxRequestSize:                opts.MaxRequestSize,
		ReadBufferSize:                opts.ReadBufferSize,
		UnixDomainSocket:              opts.UnixDomainSocket,
		DaprGracefulShutdownSeconds:   opts.DaprGracefulShutdownSeconds,
		DaprBlockShutdownDuration:     opts.DaprBlockShutdownDuration,
		DisableBuiltinK8sSecretStore:  opts.DisableBuiltinK8sSecretStore,
		EnableAppHealthCheck:          opts.EnableAppHealthCheck,
		AppHealthCheckPath:            opts.AppHealthCheckPath,
		AppHealthProbeInterval:        opts.AppHealthProbeInterval,
		AppHealthProbeTimeout:         opts.AppHealthProbeTimeout,
		AppHealthThreshold:            opts.AppHealthThreshold,
		AppChannelAddress:             opts.AppChannelAddress,
		EnableAPILogging:              opts.EnableAPILogging,
		Config:                        opts.Config,
		DisableInitEndpoints:          opts.DisableInitEndpoints,
		AppBindingOptionsTimeout:      opts.AppBindingOptionsTimeout,
		Metrics: metrics.Options{
			Enabled:       opts.Metrics.Enabled(),
			Log:           log,
			Port:          opts.Metrics.Port(),
			Namespace:     metrics.DefaultMetricNamespace,
			Healthz:       health,
			ListenAddress: opts.Metrics.ListenAddress(),
			Meter:         view.NewMeter(),
		},
		AppSSL:         opts.AppSSL,
		ComponentsPath: opts.ComponentsPath,
		Registry:       registry.NewOptions(),
		Security:       sec,
		Healthz:        health,
	}
}
