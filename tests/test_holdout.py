"""The holdout rules (fashion_fastai/data/holdout.py): what each holds out, that products and years stay whole, that
rules combine without overlap, and that `random` alone draws what it drew before the other rules existed."""
import json
from pathlib import Path

import pandas as pd
import pytest

from fashion_fastai.training.config import TrainConfig, parse_holdout_by
from fashion_fastai.core.schema import LABEL
from fashion_fastai.data.styles import assign_protocol, load_data, load_styles, top_classes
from fashion_fastai.core.errors import OptionError
from fashion_fastai.data.holdout import AUTO, RULES, describe, hold_out, held_years, product_stems

from helpers import REAL_DATA, style_line, tiny_lines, write_dataset


def frame(rows) -> pd.DataFrame:
    "rows: (id, article type, year, name, colour)."
    return pd.DataFrame(rows, columns=['id', LABEL, 'year', 'productDisplayName', 'baseColour'])


def catalogue(n_products=40, colours=('Navy Blue', 'Red', 'Black'), years=(2012,) * 6 + (2016,) * 3 + (2010,)):
    "Two article types, each product in every colour, the years cycling so that each year has many products."
    rows, i = [], 0
    for p in range(n_products):
        article = 'Shirts' if p % 2 else 'Watches'
        for c in colours:
            rows.append((i, article, years[p % len(years)], f'Brand{p} Men {c} {article}', c)); i += 1
    return frame(rows)


def test_product_stems_drop_every_colour_word_and_keep_nameless_rows_apart():
    f = frame([(1, 'Bags', 2012, 'Kiara Women Navy Blue Handbag', 'Navy Blue'),
               (2, 'Bags', 2012, 'Kiara Women Red Handbag', 'Red'),
               (3, 'Bags', 2012, 'Kiara Women Blue Handbag', 'Navy Blue'),  # a colour word of another row's colour
               (4, 'Bags', 2012, 'Lino Women Handbag', 'Red'),
               (5, 'Bags', 2012, None, 'Red'), (6, 'Bags', 2012, float('nan'), 'Red')])
    stems = product_stems(f)
    assert stems[0] == stems[1] == stems[2] == 'kiara women handbag'
    assert stems[3] == 'lino women handbag'
    assert stems[4] != stems[5] and stems[4] not in set(stems[:4])


def test_held_years_are_the_smallest_nearest_the_fraction_and_never_the_largest():
    years = pd.Series([2012] * 16290 + [2016] * 6007 + [2010] * 846 + [2018] * 405 + [2014] * 236 + [2008] * 7)
    assert held_years(years, 0.05) == held_years(years, 0.1) == [2008, 2010, 2014, 2018]  # 6.3% of the rows
    assert held_years(years, 0.02) == [2008, 2014, 2018]  # 648 rows for 476
    assert held_years(years, 0.01) == [2008, 2014]  # 243 rows, nearer 238 than 648 is
    assert held_years(years, 0.9) == [2008, 2010, 2014, 2016, 2018]  # never 2012, the largest
    assert held_years(pd.Series([2012] * 10), 0.5) == []  # one year: it trains


def test_products_are_held_whole_and_drawn_per_article_type():
    f = catalogue()
    held = hold_out(f, LABEL, 0.25, ('products',), seed=0)
    stems = product_stems(f)
    assert set(stems[held == 'products']).isdisjoint(stems[held == ''])  # no product on both sides
    for article, rows in f.groupby(LABEL):
        assert (held[rows.index] == 'products').sum() == 3 * round(0.25 * 20)  # 5 of its 20 products, 3 photos each
    assert hold_out(f, LABEL, 0.25, ('products',), seed=0).equals(held)  # seeded
    assert not hold_out(f, LABEL, 0.25, ('products',), seed=1).equals(held)


def test_rules_combine_in_one_order_each_on_what_the_last_left():
    f = catalogue()
    held = hold_out(f, LABEL, 0.2, ('random', 'products', 'years'), seed=3)
    assert held.equals(hold_out(f, LABEL, 0.2, ('years', 'products', 'random'), seed=3))  # RULES' order
    assert set(held) == {'', *RULES}
    assert set(f.loc[held == 'years', 'year']) == {2010}  # 10% of the rows, the fraction's nearest
    assert not (f.loc[held != 'years', 'year'] == 2010).any()  # a held year is held whole
    stems = product_stems(f)
    assert set(stems[held == 'products']).isdisjoint(stems[held.isin(['', 'random'])])


def test_random_alone_draws_what_it_always_drew():
    f = catalogue()
    before = f.groupby(LABEL).sample(frac=0.1, random_state=42).index  # the draw before there were rules
    assert set(hold_out(f, LABEL, 0.1, ('random',), seed=42).loc[lambda h: h == 'random'].index) == set(before)


def test_assign_protocol_records_the_rule_and_describe_counts_it(tiny_dir):
    data = load_data(tiny_dir, k=3, holdout=0.25, seed=1, holdout_by=('products',))
    f = data.frame
    assert set(f.loc[f['split'] == 'valid', 'held_by']) <= {'products', 'random'}  # random: a small part's one photo
    assert (f.loc[f['split'] != 'valid', 'held_by'] == '').all()
    d = describe(f)
    assert sum(v['photos'] for v in d.values()) == (f['split'] == 'valid').sum()
    assert load_data(tiny_dir, k=3).frame['held_by'].eq('').all()  # no holdout, nothing held


def test_a_years_rule_that_holds_nothing_says_so_with_the_years(tiny_dir):
    "Even years of 10, 9 and 1 photos: at 1% none comes nearer 0.2 photos than none does, and the record says which."
    data = load_data(tiny_dir, k=3, holdout=0.01, seed=1, holdout_by=('years', 'random'))
    d = describe(data.frame, ('years', 'random'))
    assert d['years'] == dict(photos=0, years=[], even_years={2012: 10, 2014: 9, 2016: 1})
    assert d['random']['photos'] == (data.frame['split'] == 'valid').sum()


def test_a_held_year_is_held_whole_even_where_a_class_lives_in_it_alone(tmp_path):
    """A class whose even-year photos are all of a held year has none to train on, as a class of the test split
    without training photos: the year is not split to keep it (that would put the year back into training)."""
    lines = tiny_lines() + [style_line(900 + i, 'Jackets', 2018) for i in range(2)]
    data = load_data(write_dataset(tmp_path / 'd', lines), k=3, holdout=0.25, seed=0, holdout_by=('years',))
    f = data.frame
    assert set(f.loc[f['held_by'] == 'years', 'year']) == {2016, 2018}  # 3 of 22 even-year photos, nearest 5.5
    assert (f.loc[f[LABEL] == 'Jackets', 'split'] == 'valid').all() and 'Jackets' not in data.train_counts('rare')


def test_holdout_by_option():
    assert parse_holdout_by('products, years') == ('years', 'products')
    assert TrainConfig(holdout_by='random').holdout_by == ('random',)
    assert TrainConfig(holdout_by=['years']).to_dict()['holdout_by'] == ['years']
    assert TrainConfig.from_dict(TrainConfig(holdout_by='years').to_dict()).holdout_by == ('years',)
    for bad in ('', 'year', 'random,random', 'random,colour'):
        with pytest.raises(OptionError, match='--holdout-by'):
            parse_holdout_by(bad)
    assert TrainConfig(holdout=0.1).data_options()['holdout_by'] == (AUTO,)  # the default, settled on the rows
    assert TrainConfig(holdout=0).holdout_by == (AUTO,) and TrainConfig(holdout=0, holdout_by='random').holdout == 0
    old = {k: v for k, v in TrainConfig(holdout=0.1).to_dict().items() if k != 'holdout_by'}
    assert TrainConfig.from_dict(old).holdout_by == ('random',)  # a run from before --holdout-by held a random share
    with pytest.raises(OptionError, match='--holdout-by'): parse_holdout_by('auto,years')


def test_auto_holds_whole_years_where_they_come_near_the_share_else_a_random_one(tiny_dir):
    f = catalogue()  # 2010 is a tenth of the photos
    assert hold_out(f, LABEL, 0.1, (AUTO,), seed=0).equals(hold_out(f, LABEL, 0.1, ('years',), seed=0))
    assert set(f.loc[hold_out(f, LABEL, 0.1, (AUTO,), seed=0) == 'years', 'year']) == {2010}
    data = load_data(tiny_dir, k=3, holdout=0.01, seed=1, holdout_by=(AUTO,))  # even years of 10, 9 and 1 photos
    assert set(data.frame.loc[data.frame['split'] == 'valid', 'held_by']) == {'random'}
    assert describe(data.frame, (AUTO,)).keys() == {'random'}


@pytest.mark.skipif(not (REAL_DATA / 'styles.csv').is_file(), reason=f"real data not at {REAL_DATA}")
def test_real_data_rules_hold_out_unseen_products_and_years():
    styles, _ = load_styles(REAL_DATA / 'styles.csv')
    f = assign_protocol(styles.assign(file=''), top_classes(styles), holdout=0.05, seed=42,
                        by=('years', 'products', 'random'))
    d = describe(f)
    assert d['years']['years'] == [2008, 2010, 2014, 2018]
    even = f[f['split'].isin(['train', 'valid'])]
    stems = product_stems(even)
    trained = set(stems[even['split'] == 'train'])
    shared = {r: stems[even['held_by'] == r].isin(trained).mean() for r in RULES}
    assert shared['products'] == 0 and shared['random'] > 0.5 > shared['years']


def test_agreement_table_compares_each_rule_with_the_test_split(tmp_path):
    """bench/holdout_agreement.py's arithmetic: second minus first, in points; a verdict only where both differences
    pass two standard errors of a difference on their photos (1,000 photos near 70%: 4.10 points; 10,000 near 80%:
    1.13)."""
    import sys
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / 'bench'))
    import holdout_agreement as ha
    assert round(ha.noise(0.7, 1000), 2) == 4.10 and round(ha.noise(0.8, 10000), 2) == 1.13
    rules = lambda **t: {k: {'top1': v} for k, v in t.items()}
    images = dict(years=1000, products=1000, random=1000, test=10000)
    run = lambda test, **ways: {'stages': {'stage1': {'images': images, 'run_test': test, **ways}}}
    scored = {'a': run(.80, plain=rules(years=.70, products=.90, random=.91), flip=rules(years=.71, test=.79),
                       **{'size 9x9': rules(years=.60)}),
              'b': run(.83, plain=rules(years=.75, products=.89, random=.92)),
              'c': run(.83, plain=rules(years=.64, products=.90, random=.91))}
    # all held: the rules pooled by their photos (83.67% against 85.33% and 81.67%), its band over 3,000 photos 1.91
    assert ha.agreement(scored, 'size=a:b') == ['| size | stage1 | +5.00 (yes) | -1.00 (≈) | +1.00 (≈) | +1.67 (≈) | '
                                                '+3.00 |']
    assert ha.agreement(scored, 'other=a:c') == ['| other | stage1 | -6.00 (no) | +0.00 (≈) | +0.00 (≈) | -2.00 (no) | '
                                                 '+3.00 |']
    assert ha.agreement(scored, 'flip=a:a/flip') == ['| flip | stage1 | +1.00 (≈) | - | - | - | -1.00 (≈) |']
    assert ha.agreement(scored, 'big=a:a/size 9x9') == [
        '| big | stage1 | -10.00 (test not measured) | - | - | - | not measured |']
    assert (ha.score_rows([dict(scored['b'], run='runs/b')])[2]
            == '| b | stage1 | plain | 75.00% | 89.00% | 92.00% | 85.33% | 83.00% |')
    assert ha.agreement(scored, 'size@stage2=a:b') == []  # that stage alone: these runs have none
    path = tmp_path / 'holdout-agreement-a.json'
    ha.merged(path, {'command': 'one', 'stages': {'stage1': {'images': {'years': 3}, 'run_test': .8,
                                                             'plain': rules(years=.7)}}})
    both = ha.merged(path, {'command': 'two', 'stages': {'stage1': {'images': {'years': 3, 'test': 9}, 'run_test': .8,
                                                                    'plain': rules(test=.8),
                                                                    'flip': rules(years=.71)}}})
    assert both['commands'] == ['one', 'two'] and both == json.loads(path.read_text())
    assert both['stages']['stage1']['plain'] == rules(years=.7, test=.8)
    assert both['stages']['stage1']['images']['test'] == 9
