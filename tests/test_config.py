"""`resolve_config`: defaults, recipes and the errors that name a bad value."""


import pytest

from mdnet_keras.training import config as train_config
from mdnet_keras.training import recipe


def test_unknown_names_error():
    with pytest.raises(ValueError, match="Unknown dataset 'imagenet'"):
        train_config.resolve_config(dataset="imagenet")
    with pytest.raises(ValueError, match="Unknown model 'mdnet_huge'"):
        train_config.resolve_config(model="mdnet_huge")
    with pytest.raises(ValueError, match="Unknown strategy"):
        train_config.resolve_config(strategy="parameter_server")
    with pytest.raises(ValueError, match="Unknown training options"):
        train_config.resolve_config(epoch=3)


def test_recipe_errors_name_the_value():
    with pytest.raises(ValueError, match="--recipe: Unknown recipe 'turbo'"):
        train_config.resolve_config(recipe="turbo")
    with pytest.raises(ValueError, match="Unknown optimizer 'rmsprop'"):
        train_config.resolve_config(optimizer="rmsprop")
    with pytest.raises(ValueError, match="`ema_momentum` must be in"):
        train_config.resolve_config(ema_momentum=1.0)
    with pytest.raises(ValueError, match="`momentum` must be in"):
        train_config.resolve_config(momentum=-0.1)
    with pytest.raises(ValueError, match="Unknown schedule 'step'"):
        train_config.resolve_config(schedule="step")
    with pytest.raises(ValueError, match="`time_budget_minutes` must be > 0"):
        train_config.resolve_config(time_budget_minutes=0)
    for bad in (0, "0", "1.5", "fast"):
        with pytest.raises(ValueError, match="`steps_per_execution` must be "
                                             "'auto' or an integer >= 1"):
            train_config.resolve_config(steps_per_execution=bad)
    with pytest.raises(ValueError, match="not supported by Keras on the torch"):
        train_config.check_steps_per_execution(8, backend="torch")
    assert train_config.check_steps_per_execution("8", backend="jax") == 8
    assert train_config.check_steps_per_execution("AUTO", backend="torch") == "auto"
    assert train_config.resolve_config().steps_per_execution == "auto"
    cifar = train_config.resolve_config(dataset="cifar10", epochs=15)
    assert (cifar.recipe, cifar.optimizer, cifar.schedule) == (
        "fast", "sgd", "one_cycle")
    assert train_config.resolve_config(dataset="cifar10").recipe == "long"
    # A flag wins over its recipe; the sample's own values only go with
    # the sample's own recipe.
    assert train_config.resolve_config(recipe="fast", label_smoothing=0.0
                              ).label_smoothing == 0.0
    assert train_config.resolve_config().learning_rate == 2e-3
    assert train_config.resolve_config(recipe="fast").learning_rate == (
        recipe.RECIPES["fast"].learning_rate)


def test_model_config_errors_name_the_flag():
    with pytest.raises(ValueError, match="--model_config is not valid JSON"):
        train_config.resolve_config(model_config="{stage_depths: [1]}")
    with pytest.raises(ValueError, match="must be a JSON object"):
        train_config.resolve_config(model_config="[1, 2]")
    with pytest.raises(ValueError, match="unknown MDNet argument.*'depth'"):
        train_config.resolve_config(model_config='{"depth": 3}')
    with pytest.raises(ValueError, match="unknown MDNet argument.*'num_classes'"):
        train_config.resolve_config(model_config='{"num_classes": 3}')
    assert train_config.resolve_config(
        model_config='{"head_channels": 64}').model_config == {
        "head_channels": 64}


def test_a_default_warmup_fits_a_short_run_and_a_given_one_is_kept():
    assert train_config.resolve_config(epochs=1).warmup_epochs == 0.2
    assert train_config.resolve_config(epochs=10).warmup_epochs == 1
    assert train_config.resolve_config(dataset="cifar10", epochs=4,
                                       recipe="legacy").warmup_epochs == 0.8
    assert train_config.resolve_config(epochs=1,
                                       warmup_epochs=3).warmup_epochs == 3
